// The parse arena: an allocation cap, and no leaks on a failed parse.
//
// Faiss's READVECTOR resizes a vector to a length read from the file *before*
// reading its bytes, so a corrupt length field could ask for any size. While a
// header is parsed, this thread refuses any single allocation above the cap (a
// few times the file's size), turning such a field into an ordinary error
// instead of an OOM kill.
//
// Faiss's reader also builds with raw `new` and leaks what it has built when
// it throws halfway (a corrupt field, or a prefix too short, which open then
// retries with more bytes). So the arena records every block this thread
// allocates during the parse and forgets those freed again; when the parse
// throws, what is still recorded is the partly built index, and the caller
// frees it. The reader holds nothing but memory, so freeing it whole is enough.
//
// Owns: the global operator new/delete, and handing free heap pages back to
// the OS. Must not touch: anything Faiss-specific.

#include <malloc.h>

#include <cstdlib>
#include <new>
#include <unordered_set>

#include "internal.h"

namespace {

// The arena's own bookkeeping must not pass through operator new.
template <class T>
struct MallocAllocator {
    using value_type = T;
    MallocAllocator() = default;
    template <class U>
    MallocAllocator(const MallocAllocator<U>&) {}
    T* allocate(size_t n) {
        void* p = std::malloc(n * sizeof(T));
        if (p == nullptr) {
            throw std::bad_alloc();
        }
        return static_cast<T*>(p);
    }
    void deallocate(T* p, size_t) { std::free(p); }
    bool operator==(const MallocAllocator&) const { return true; }
    bool operator!=(const MallocAllocator&) const { return false; }
};

}  // namespace

namespace ivflake {
struct ArenaState {
    size_t cap;
    // Off once the parse has thrown: what the handler allocates is not the
    // index's and must not be freed with it.
    bool record = true;
    std::unordered_set<void*, std::hash<void*>, std::equal_to<void*>, MallocAllocator<void*>>
            live;
};
}  // namespace ivflake

namespace {
// A plain pointer, so no thread-exit destructor races the allocator.
thread_local ivflake::ArenaState* t_arena = nullptr;
}  // namespace

namespace ivflake {

ParseArena::ParseArena(size_t cap) {
    auto* state = static_cast<ArenaState*>(std::malloc(sizeof(ArenaState)));
    if (state == nullptr) {
        throw std::bad_alloc();
    }
    state_ = new (state) ArenaState{cap == 0 ? SIZE_MAX : cap, true, {}};
    t_arena = state_;
}

ParseArena::~ParseArena() {
    t_arena = nullptr;
    state_->~ArenaState();
    std::free(state_);
}

void ParseArena::stop_recording() {
    state_->record = false;
}

bool release_free_memory() {
    return malloc_trim(0) != 0;
}

void ParseArena::free_recorded() {
    t_arena = nullptr;
    for (void* p : state_->live) {
        std::free(p);
    }
    state_->live.clear();
}

}  // namespace ivflake

void* operator new(std::size_t size) {
    ivflake::ArenaState* arena = t_arena;
    if (arena != nullptr && size > arena->cap) {
        throw ivflake::AllocationRefused();
    }
    void* p = std::malloc(size == 0 ? 1 : size);
    if (p == nullptr) {
        throw std::bad_alloc();
    }
    if (arena != nullptr && arena->record) {
        try {
            arena->live.insert(p);
        } catch (...) {
            std::free(p);
            throw std::bad_alloc();
        }
    }
    return p;
}
void* operator new[](std::size_t size) {
    return ::operator new(size);
}
void operator delete(void* p) noexcept {
    if (p != nullptr && t_arena != nullptr) {
        t_arena->live.erase(p);
    }
    std::free(p);
}
void operator delete[](void* p) noexcept {
    ::operator delete(p);
}
void operator delete(void* p, std::size_t) noexcept {
    ::operator delete(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    ::operator delete(p);
}
