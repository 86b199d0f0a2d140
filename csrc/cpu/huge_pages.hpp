#pragma once
// Storage for packed weights. Blocks of 2 MB and more start on a 2 MB boundary and are offered to
// the kernel for transparent huge pages (Linux's "madvise" mode, the default of many
// distributions, gives them only to memory that asks): the weights that a recurrent step streams
// from beyond L2 then take a TLB miss per 2 MB instead of per 4 KB. Elsewhere, and for smaller
// blocks, 64-byte alignment only.
#include <cstddef>
#include <cstdlib>
#if defined(_WIN32)
#include <malloc.h>
#endif
#include <new>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fastlstm::cpu {

template <typename T>
class HugePageAllocator {
 public:
  using value_type = T;
  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) noexcept {}

  T* allocate(size_t n) {
    if (n > static_cast<size_t>(-1) / sizeof(T)) throw std::bad_alloc();
    const size_t bytes = n * sizeof(T);
    const bool huge = bytes >= kHugePage;
#if defined(_WIN32)
    void* p = _aligned_malloc(bytes == 0 ? 64 : bytes, 64);
    if (!p) throw std::bad_alloc();
#else
    void* p = nullptr;
    if (posix_memalign(&p, huge ? kHugePage : 64, bytes == 0 ? 64 : bytes) != 0) throw std::bad_alloc();
#endif
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    // Only whole 2 MB pages inside the block become huge ones: nothing beyond it is resident.
    if (huge) madvise(p, bytes / kHugePage * kHugePage, MADV_HUGEPAGE);  // a hint: failure is harmless
#endif
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) noexcept {
#if defined(_WIN32)
    _aligned_free(p);
#else
    std::free(p);
#endif
  }

  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const noexcept {
    return true;
  }
  template <typename U>
  bool operator!=(const HugePageAllocator<U>&) const noexcept {
    return false;
  }

 private:
  static constexpr size_t kHugePage = size_t(2) << 20;
};

// Packed weight panels.
template <typename T>
using PanelVector = std::vector<T, HugePageAllocator<T>>;

}  // namespace fastlstm::cpu
