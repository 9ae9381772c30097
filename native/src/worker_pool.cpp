#include "worker_pool.hpp"

namespace e3emu {

WorkerPool::WorkerPool(unsigned workers) {
    for (unsigned w = 1; w < workers; ++w) threads_.emplace_back([this, w] { worker_loop(w); });
}

WorkerPool::~WorkerPool() {
    {
        std::lock_guard lock(state_mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    for (auto& thread : threads_) thread.join();
}

void WorkerPool::drain(unsigned worker) {
    for (std::size_t i = next_.fetch_add(1); i < count_; i = next_.fetch_add(1)) (*body_)(i, worker);
}

void WorkerPool::worker_loop(unsigned worker) {
    std::uint64_t seen = 0;
    for (;;) {
        {
            std::unique_lock lock(state_mutex_);
            wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
            if (stopping_) return;
            seen = generation_;
            ++joined_;
            ++busy_;
        }
        drain(worker);
        {
            std::lock_guard lock(state_mutex_);
            --busy_;
        }
        finished_.notify_all();
    }
}

void WorkerPool::parallel_for(std::size_t count, const std::function<void(std::size_t, unsigned)>& body) {
    if (count == 0) return;
    std::lock_guard job(job_mutex_);
    if (threads_.empty() || count == 1) {
        for (std::size_t i = 0; i < count; ++i) body(i, 0);
        return;
    }
    {
        std::lock_guard lock(state_mutex_);
        body_ = &body;
        count_ = count;
        next_.store(0);
        joined_ = 0;
        ++generation_;
    }
    wake_.notify_all();
    drain(0);
    // Every worker must have joined this job and left it before body and count may change for the next one.
    std::unique_lock lock(state_mutex_);
    finished_.wait(lock, [&] { return joined_ == threads_.size() && busy_ == 0; });
}

} // namespace e3emu
