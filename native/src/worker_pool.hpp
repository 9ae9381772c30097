// A fixed pool of worker threads (one per core) that runs index ranges; the calling thread works too.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace e3emu {

class WorkerPool {
public:
    // `workers` counts the caller, so workers - 1 threads are started.
    explicit WorkerPool(unsigned workers);
    ~WorkerPool();
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    unsigned size() const { return static_cast<unsigned>(threads_.size()) + 1; }

    // Calls body(index, worker) for every index in [0, count), spread over the workers; worker is in
    // [0, size()). Returns when all calls are done. Concurrent callers are serialised.
    void parallel_for(std::size_t count, const std::function<void(std::size_t, unsigned)>& body);

private:
    void worker_loop(unsigned worker);
    void drain(unsigned worker);

    std::vector<std::thread> threads_;
    std::mutex job_mutex_;   // one job at a time
    std::mutex state_mutex_;
    std::condition_variable wake_;
    std::condition_variable finished_;
    const std::function<void(std::size_t, unsigned)>* body_ = nullptr;
    std::size_t count_ = 0;
    std::atomic<std::size_t> next_{0};
    std::uint64_t generation_ = 0;
    std::size_t joined_ = 0; // workers that took the current job
    unsigned busy_ = 0;
    bool stopping_ = false;
};

} // namespace e3emu
