#include "mm/address_space.h"

#include <cassert>

#include "page/folio_lock.h"

namespace dpmm::mm {

AddressSpace::~AddressSpace() {
  assert(i_mmap_.empty() && "a page cache went away while an mm still maps its file");
  std::map<uint64_t, page::Folio> all =
      i_pages_.with([](std::map<uint64_t, page::Folio>& m) { return std::exchange(m, {}); });
  for (auto& [index, folio] : all) {
    assert(folio.mapcount() == 0 && "a cached folio is still mapped at final truncation");
    folio.set_mapping_word(0);
    page::folio_put(folio);  // the cache's reference
  }
}

AddressSpace* AddressSpace::of_folio(page::Folio folio) {
  const uint64_t w = folio.mapping_word();
  if (w == 0 || (w & page::kFolioMappingFlags) != 0) return nullptr;
  return reinterpret_cast<AddressSpace*>(w);
}

std::optional<page::Folio> AddressSpace::get_folio(uint64_t index) {
  return i_pages_.with([&](std::map<uint64_t, page::Folio>& m) -> std::optional<page::Folio> {
    auto it = m.find(index);
    if (it == m.end()) return std::nullopt;
    // The cache's own reference keeps the count above zero while the entry exists.
    const bool got = page::folio_try_get(it->second);
    assert(got && "a cached folio has the cache's reference");
    (void)got;
    return it->second;
  });
}

Status AddressSpace::add_folio(page::Folio folio, uint64_t index) {
  assert((!folio.is_large() || folio.is_hugetlb()) &&
         "large folios in the page cache are hugetlbfs folios only (no file THP)");
  return i_pages_.with([&](std::map<uint64_t, page::Folio>& m) -> Status {
    if (m.contains(index))
      return make_error(Errno::kEEXIST, "page offset {:#x} is already cached", index);
    page::folio_get(folio);
    folio.set_mapping_word(mapping_word());
    folio.set_index(index);
    m.emplace(index, folio);
    return ok();
  });
}

void AddressSpace::remove_folio_locked(page::Folio folio) {
  assert(page::folio_test_locked(folio) && "filemap_remove_folio needs the folio lock");
  assert(folio.mapcount() == 0 && "filemap_remove_folio of a mapped folio");
  i_pages_.with([&](std::map<uint64_t, page::Folio>& m) {
    auto it = m.find(folio.index());
    assert(it != m.end() && it->second == folio && "removing a folio that is not cached here");
    m.erase(it);
  });
  folio.set_mapping_word(0);
}

std::vector<std::pair<uint64_t, page::Folio>> AddressSpace::folios_from(uint64_t from) {
  return i_pages_.with([&](std::map<uint64_t, page::Folio>& m) {
    std::vector<std::pair<uint64_t, page::Folio>> out;
    for (auto it = m.lower_bound(from); it != m.end(); ++it) {
      const bool got = page::folio_try_get(it->second);
      assert(got && "a cached folio has the cache's reference");
      (void)got;
      out.emplace_back(it->first, it->second);
    }
    return out;
  });
}

uint64_t AddressSpace::nr_pages() {
  return i_pages_.with([](std::map<uint64_t, page::Folio>& m) { return m.size(); });
}

void AddressSpace::i_mmap_unlink(Mm* mm) {
  auto it = i_mmap_.find(mm);
  assert(it != i_mmap_.end() && it->second > 0 && "i_mmap unlink of an mm that is not linked");
  if (--it->second == 0) i_mmap_.erase(it);
}

std::vector<Mm*> AddressSpace::i_mmap_mms() const {
  std::vector<Mm*> out;
  out.reserve(i_mmap_.size());
  for (const auto& [mm, n] : i_mmap_) out.push_back(mm);
  return out;
}

}  // namespace dpmm::mm
