#include "mm/hstate.h"

#include <algorithm>
#include <cassert>
#include <utility>

#include "mm/kernel.h"
#include "mm/page_table.h"

namespace dpmm::mm {

Hstate::Hstate(Kernel& kernel) : kernel_(kernel) {}

Hstate::~Hstate() {
  std::vector<page::Page*> heads;
  {
    SpinLocker guard(lock_);
    assert(free_list_.size() == nr_huge_pages_ && "a hugetlb folio is still in use");
    assert(resv_huge_pages_ == 0 && "hugetlb reservations outlived every mapping");
    heads = std::exchange(free_list_, {});
    nr_huge_pages_ = 0;
  }
  for (page::Page* head : heads) dissolve(head);
}

Order Hstate::order() const { return Order(kHpagePmdOrder); }

uint64_t Hstate::size() const { return kHpagePmdSize; }

void Hstate::dissolve(page::Page* head) {
  // __update_and_free_hugetlb_folio: the type goes, the folio becomes a buddy block again
  // (free_frozen resets the releaser to the zone).
  head->clear_type(page::PageType::kHugetlb);
  page::folio_ref_unfreeze(page::Folio(head), 1);
  kernel_.node().free_pages(head, order());
}

void Hstate::set_max_huge_pages(uint64_t count) {
  // Grow: alloc_pool_huge_folio one at a time, outside hugetlb_lock.
  while (true) {
    {
      SpinLocker guard(lock_);
      if (nr_huge_pages_ >= count) break;
    }
    Result<page::Folio> fresh = kernel_.alloc_folio(order());  // zeroed, compound
    if (fresh.is_error()) break;                                // the buddy ran out
    page::Folio folio = *fresh;
    // init_new_hugetlb_folio + prep_new_hugetlb_folio: typed, released to us, frozen.
    folio.head()->set_type(page::PageType::kHugetlb);
    folio.head()->set_releaser(this);
    [[maybe_unused]] const bool frozen = page::folio_ref_freeze(folio, 1);
    assert(frozen && "a folio fresh from the buddy has exactly one reference");
    SpinLocker guard(lock_);
    free_list_.push_back(folio.head());
    ++nr_huge_pages_;
  }
  // Shrink: never below what is in use or promised (min_count in set_max_huge_pages).
  std::vector<page::Page*> gone;
  {
    SpinLocker guard(lock_);
    const uint64_t in_use = nr_huge_pages_ - free_list_.size();
    const uint64_t floor = resv_huge_pages_ + in_use;
    const uint64_t target = std::max(count, floor);
    while (nr_huge_pages_ > target) {
      gone.push_back(free_list_.back());
      free_list_.pop_back();
      --nr_huge_pages_;
    }
  }
  for (page::Page* head : gone) dissolve(head);
}

HugetlbMeminfo Hstate::meminfo() const {
  SpinLocker guard(lock_);
  return HugetlbMeminfo{.total = nr_huge_pages_,
                        .free = free_list_.size(),
                        .rsvd = resv_huge_pages_,
                        .surp = 0,
                        .page_size = size()};
}

Status Hstate::reserve(uint64_t delta) {
  SpinLocker guard(lock_);
  // gather_surplus_pages: the promise must fit in the free pages not yet promised; with
  // nr_overcommit_hugepages 0 no surplus page may be allocated to cover the rest.
  if (resv_huge_pages_ + delta > free_list_.size())
    return make_error(Errno::kENOMEM,
                      "hugetlb reservation of {} pages: {} free, {} already reserved", delta,
                      free_list_.size(), resv_huge_pages_);
  resv_huge_pages_ += delta;
  return ok();
}

void Hstate::unreserve(uint64_t delta) {
  SpinLocker guard(lock_);
  assert(resv_huge_pages_ >= delta && "unreserving more hugetlb pages than are reserved");
  resv_huge_pages_ -= delta;
}

void Hstate::restore_reserve() {
  SpinLocker guard(lock_);
  ++resv_huge_pages_;
}

Result<page::Folio> Hstate::alloc_folio(UseReserve use_reserve) {
  page::Page* head = nullptr;
  {
    SpinLocker guard(lock_);
    // dequeue_hugetlb_folio_vma: without a reservation, only pages nobody was promised.
    const uint64_t available = free_list_.size() - resv_huge_pages_;
    if (use_reserve == UseReserve::kNo && available == 0)
      return make_error(Errno::kENOSPC, "no unreserved free huge page ({} free, {} reserved)",
                        free_list_.size(), resv_huge_pages_);
    assert((use_reserve == UseReserve::kNo || resv_huge_pages_ > 0) &&
           "allocating with a reservation nobody holds");
    if (free_list_.empty())
      return make_error(Errno::kENOSPC, "the hugetlb pool has no free page");
    head = free_list_.back();
    free_list_.pop_back();
    if (use_reserve == UseReserve::kYes) --resv_huge_pages_;
  }
  page::Folio folio(head);
  page::folio_ref_unfreeze(folio, 1);
  return folio;
}

void Hstate::folio_release(page::Folio folio) {
  page::Page* head = folio.head();
  assert(folio.is_hugetlb() && "free_huge_folio of a folio that is not hugetlb");
  const bool restore_reserve = folio_test_hugetlb_restore_reserve(folio);
  assert(folio.entire_mapcount() == 0 && folio.mapcount() == 0 && "freeing a mapped huge folio");
  // free_huge_folio: the anon mapping and the folio's flags go; PG_head stays (the folio
  // stays compound in the pool).
  head->set_mapping_word(0);
  head->set_index(0);
  head->set_private_data(0);
  head->clear_page_flags();
  head->set_flag(page::PageFlag::kHead);
  folio.pincount_raw().store(0, std::memory_order_relaxed);
  SpinLocker guard(lock_);
  free_list_.push_back(head);
  if (restore_reserve) ++resv_huge_pages_;
}

}  // namespace dpmm::mm
