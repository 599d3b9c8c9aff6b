#include "mm/file_rmap.h"

#include <cassert>

namespace dpmm::mm {

void folio_add_file_rmap_pte([[maybe_unused]] page::Folio folio, page::Page* page) {
  assert(folio.contains(page) && "page outside its folio");
  assert(!folio.is_anon() && "folio_add_file_rmap_pte of an anon folio");
  assert(!folio.is_large() && "large file folios are not modelled (anonymous THP only)");
  page->mapcount_add_return(1);
}

}  // namespace dpmm::mm
