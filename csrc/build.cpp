// Construction: partition keys into pieces, then peel each piece's 3- or 4-uniform hypergraph.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "chunked.h"
#include "hash.h"
#include "weightless.h"

namespace wl {
namespace {

constexpr uint32_t kMaxAttempts = 64;
constexpr uint32_t kAttemptsPerSize = 4;  // after this many failed seeds, grow the table
constexpr uint64_t kMaxPieceKeys = uint64_t(1) << 28;
constexpr uint64_t kMinBlockKeys = 64;

struct PieceShape {
    uint32_t segment_length_log2;
    uint32_t segment_count;
};

// Table size for n keys: the binary fuse filter sizing (Graf & Lemire 2022), except that 3-wise
// segments are half as long as theirs. A table is a whole number of segments, and with shorter
// segments rounding up wastes half as much: at n = 1M, 1.1264 cells per key instead of 1.1305,
// while the first seed still peels in ~80% of builds (measured; 100% from 2M keys, >= 85% for
// smaller pieces). Shorter 4-wise segments peel far less often at small n, so those keep theirs.
// Every kAttemptsPerSize failures add 2% of cells.
PieceShape piece_shape(uint64_t n, uint32_t arity, uint32_t attempt) {
    if (n == 0) return {0, 0};
    double ln_n = std::log(double(std::max<uint64_t>(n, 2)));
    double length_log2 = arity == 3 ? ln_n / std::log(3.33) + 1.25 : ln_n / std::log(2.91) - 0.5;
    double factor = arity == 3 ? std::max(1.125, 0.875 + 0.25 * std::log(1e6) / ln_n)
                               : std::max(1.075, 0.77 + 0.305 * std::log(6e5) / ln_n);
    factor *= 1.0 + 0.02 * (attempt / kAttemptsPerSize);
    uint32_t log2 = uint32_t(std::clamp(std::floor(length_log2), 0.0, double(kMaxSegmentLengthLog2)));
    uint64_t length = uint64_t(1) << log2;
    uint64_t capacity = uint64_t(std::ceil(double(n) * factor));
    uint64_t total_segments = std::max<uint64_t>(arity, (capacity + length - 1) / length);
    return {log2, uint32_t(total_segments - (arity - 1))};
}

void check_options(const BuildOptions& o) {
    if (o.value_bits < 1 || o.value_bits > kMaxValueBits)
        throw std::invalid_argument("value_bits must be in [1, 16], got " + std::to_string(o.value_bits));
    if (o.cell_bits < o.value_bits || o.cell_bits > kMaxCellBits)
        throw std::invalid_argument("cell_bits must be in [value_bits, 32] = [" + std::to_string(o.value_bits) +
                                    ", 32], got " + std::to_string(o.cell_bits));
    if (o.arity != 3 && o.arity != 4)
        throw std::invalid_argument("arity must be 3 or 4, got " + std::to_string(o.arity));
    if (o.format_version != kFormatVersion && o.format_version != kFuseFormatVersion)
        throw std::invalid_argument("format_version must be 3 (chunked) or 2 (fuse), got " +
                                    std::to_string(o.format_version));
    if (o.chunk_keys > kMaxChunkKeys)
        throw std::invalid_argument("chunk_keys must be 0 (the default) or in [1, 32768], got " +
                                    std::to_string(o.chunk_keys));
    if (o.piece_keys > kMaxPieceKeys)
        throw std::invalid_argument("piece_keys must be at most 2^28, got " + std::to_string(o.piece_keys));
    if (o.block_keys != 0 && o.block_keys < kMinBlockKeys)
        throw std::invalid_argument("block_keys must be 0 (the default) or at least 64, got " +
                                    std::to_string(o.block_keys));
}

[[noreturn]] void throw_duplicate(uint64_t key) {
    throw std::invalid_argument("duplicate key " + std::to_string(key) + ": keys must be distinct");
}

// Keys of one piece, and the table built for them.
struct PieceJob {
    const uint64_t* keys = nullptr;
    const uint32_t* values = nullptr;
    uint32_t num_keys = 0;
    bool keys_known_distinct = false;
    Piece piece;
    std::vector<uint32_t> keys_per_block;  // the blocks are fixed before the first attempt
    std::vector<uint32_t> table;
};

// Below this many keys in a piece, starting threads costs more than they save.
constexpr uint32_t kParallelKeys = uint32_t(1) << 16;

// Runs fn(0), ..., fn(threads - 1) concurrently, fn(0) on the calling thread.
template <typename Fn>
void run_threads(unsigned threads, Fn&& fn) {
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back(fn, t);
    fn(0u);
    for (auto& th : pool) th.join();
}

inline void prefetch(const void* p) {
#if defined(__GNUC__)
    __builtin_prefetch(p);
#else
    (void)p;
#endif
}

// A peeling cell holds the XOR of its keys' hashes and (number of keys) << 26 | (XOR of their
// slot numbers) << 24 | (XOR of their values), as binary fuse filters do with hashes: a cell
// left with one key holds that key's hash and value, so peeling never looks a key up.
constexpr uint32_t kSlotShift = 24;
constexpr uint32_t kCountShift = 26;
constexpr uint32_t kMaxCount = 63;

struct PeelCell {
    KeyHash hash;
    uint32_t count_slot_value;
};

struct PeeledKey {
    KeyHash hash;
    uint32_t first_cell;  // h0
    uint32_t slot_value;  // slot << 24 | value: the cell it was peeled from, and its value
};

// Scratch reused across the attempts and pieces one thread builds.
struct Peeler {
    std::vector<PeeledKey> keys;       // hashed keys ordered by first segment; then in peeling order
    std::vector<uint32_t> bucket;      // per segment: index of its first key in sorted order
    std::vector<std::vector<uint32_t>> next;  // per thread and segment: next free slot of the sort
    std::vector<PeelCell> table;
    std::vector<uint32_t> alone;       // stack of cells with one key left, at or behind the sweep
    size_t num_peeled = 0;

    size_t footprint() const {
        return keys.capacity() * sizeof(PeeledKey) + table.capacity() * sizeof(PeelCell) +
               next.size() * bucket.capacity() * sizeof(uint32_t) +
               (bucket.capacity() + alone.capacity()) * sizeof(uint32_t);
    }

    // Returns false if this seed and size do not peel. Arity is a template parameter so the
    // loops over a key's cells unroll: construction is bound by instruction count. Sorting and
    // counting run on `threads` threads; the result does not depend on how many.
    template <uint32_t Arity>
    bool peel(const PieceJob& job, const PieceGeometry& g, uint32_t num_cells, unsigned threads) {
        const Piece& piece = job.piece;
        const uint32_t n = job.num_keys, segment_count = piece.segment_count;
        const uint32_t segment_length_log2 = piece.segment_length_log2;
        const unsigned T = n >= kParallelKeys ? std::max(1u, threads) : 1;
        auto first_cell_of = [&](uint64_t key, const KeyHash& h) {
            return first_cell(h, first_cells_of_block(piece, block_of(piece, key)));
        };
        auto slice = [&](unsigned t, uint32_t& from, uint32_t& to) {
            from = uint32_t(uint64_t(n) * t / T);
            to = uint32_t(uint64_t(n) * (t + 1) / T);
        };

        // Counting sort by first segment, so the cell updates below sweep the table in order.
        // Thread t sorts its slice of the keys; its keys of a segment land after those of the
        // threads before it, exactly where a sequential stable sort puts them.
        next.resize(T);
        run_threads(T, [&](unsigned t) {
            next[t].assign(segment_count, 0);
            uint32_t from, to;
            slice(t, from, to);
            for (uint32_t i = from; i < to; ++i) {
                uint64_t key = job.keys[i];
                ++next[t][first_cell_of(key, hash_key(key, piece.hash_seed)) >> segment_length_log2];
            }
        });
        bucket.resize(size_t(segment_count) + 1);  // bucket[s]: index of segment s's first key
        uint32_t total = 0;
        for (uint32_t seg = 0; seg < segment_count; ++seg) {
            bucket[seg] = total;
            for (unsigned t = 0; t < T; ++t) {
                uint32_t count = next[t][seg];
                next[t][seg] = total;
                total += count;
            }
        }
        bucket[segment_count] = total;
        keys.resize(n);
        run_threads(T, [&](unsigned t) {
            uint32_t from, to;
            slice(t, from, to);
            for (uint32_t i = from; i < to; ++i) {
                uint64_t key = job.keys[i];
                KeyHash h = hash_key(key, piece.hash_seed);
                uint32_t h0 = first_cell_of(key, h);
                keys[next[t][h0 >> segment_length_log2]++] = {h, h0, job.values[i]};
            }
        });

        // The window of cells in use slides up the table; fetch the segment it is about to
        // enter, which would otherwise be a run of cache misses.
        const uint32_t ahead = Arity * g.segment_length;
        table.assign(num_cells, PeelCell{});
        auto add_keys = [&](uint32_t from, uint32_t to) {
            uint32_t cells[Arity];
            for (uint32_t k = from; k < to; ++k) {
                const PeeledKey& key = keys[k];
                key_cells<Arity>(key.hash, key.first_cell, g, cells);
                if (cells[0] + ahead < num_cells) prefetch(&table[cells[0] + ahead]);
                for (uint32_t j = 0; j < Arity; ++j) {
                    PeelCell& c = table[cells[j]];
                    if ((c.count_slot_value >> kCountShift) == kMaxCount) return false;  // hopeless; would wrap
                    c.hash.x ^= key.hash.x;
                    c.hash.y ^= key.hash.y;
                    c.count_slot_value =
                        (c.count_slot_value + (uint32_t(1) << kCountShift)) ^ (j << kSlotShift) ^ key.slot_value;
                }
            }
            return true;
        };
        // Thread t adds the keys whose first segment lies in its range of segments but not in
        // the range's last Arity - 1: their cells stay inside the range, so no two threads
        // touch a cell. Those last segments' keys are added afterwards, on one thread.
        std::vector<char> added(T, 1);
        auto inner_end = [&](unsigned t) {
            uint32_t lo = uint32_t(uint64_t(segment_count) * t / T), hi = uint32_t(uint64_t(segment_count) * (t + 1) / T);
            return hi >= lo + (Arity - 1) ? hi - (Arity - 1) : lo;
        };
        run_threads(T, [&](unsigned t) {
            added[t] = add_keys(bucket[uint32_t(uint64_t(segment_count) * t / T)], bucket[inner_end(t)]);
        });
        for (unsigned t = 0; t < T; ++t)
            if (!added[t] || !add_keys(bucket[inner_end(t)], bucket[uint32_t(uint64_t(segment_count) * (t + 1) / T)]))
                return false;

        // Peel in one sweep over the cells. The coupled layout peels as a wave along the table,
        // so a cell that becomes alone ahead of the sweep waits for it, and only cells behind
        // the sweep are peeled at once: the working set stays a few segments wide, in cache.
        // The sorted keys are no longer needed: their slots receive the keys in peeling order.
        if (alone.size() < 64) alone.resize(64);
        uint32_t cells[Arity];
        num_peeled = 0;
        for (uint32_t sweep = 0; sweep < num_cells; ++sweep) {
            if (sweep + ahead < num_cells) prefetch(&table[sweep + ahead]);
            // Pushes are branch-free (write, then advance only if the cell is alone): whether a
            // cell is alone is a coin flip the branch predictor cannot learn.
            size_t top = 0;
            alone[top] = sweep;
            top += (table[sweep].count_slot_value >> kCountShift) == 1;
            while (top) {
                if (top + Arity >= alone.size()) alone.resize(2 * alone.size());  // room for this peel's pushes
                const uint32_t cell = alone[--top];
                const PeelCell only = table[cell];
                if ((only.count_slot_value >> kCountShift) != 1) continue;  // lost its last key since pushed
                uint32_t slot_value = only.count_slot_value & ((uint32_t(1) << kCountShift) - 1);
                uint32_t h0 = first_cell_from(only.hash, g, cell, slot_value >> kSlotShift);
                keys[num_peeled++] = {only.hash, h0, slot_value};
                key_cells<Arity>(only.hash, h0, g, cells);
                uint32_t value = slot_value & ((uint32_t(1) << kSlotShift) - 1);
                for (uint32_t j = 0; j < Arity; ++j) {
                    PeelCell& c = table[cells[j]];
                    c.hash.x ^= only.hash.x;
                    c.hash.y ^= only.hash.y;
                    c.count_slot_value = (c.count_slot_value - (uint32_t(1) << kCountShift)) ^ (j << kSlotShift) ^ value;
                    // The peeled cell itself drops to zero keys and is never pushed.
                    alone[top] = cells[j];
                    top += (cells[j] <= sweep) & ((c.count_slot_value >> kCountShift) == 1);
                }
            }
        }
        return num_peeled == n;
    }

    // Assign cells in reverse peeling order: each key's peeled cell was free when it was
    // peeled, so setting it last satisfies the key's equation without disturbing earlier ones.
    template <uint32_t Arity>
    void assign(const PieceGeometry& g, uint32_t cell_mask, std::vector<uint32_t>& out) const {
        out.assign(table.size(), 0);
        uint32_t cells[Arity];
        const uint32_t behind = g.segment_length;
        for (size_t i = num_peeled; i-- > 0;) {
            const PeeledKey& key = keys[i];
            uint32_t slot = key.slot_value >> kSlotShift;
            key_cells<Arity>(key.hash, key.first_cell, g, cells);
            if (cells[0] >= behind) prefetch(&out[cells[0] - behind]);  // the window slides down
            uint32_t word = (key.slot_value & ((uint32_t(1) << kSlotShift) - 1)) ^ key_mask(key.hash, cell_mask);
            for (uint32_t j = 0; j < Arity; ++j)
                if (j != slot) word ^= out[cells[j]];
            out[cells[slot]] = word;
        }
    }
};

// Scratch outlives a build: a model is many filters built in a row, and first-touch page faults
// on fresh scratch cost about as much as a sixth of a build. A few peelers are kept (about 30
// bytes per key of the largest piece each), and one that grew past kMaxPooledBytes is dropped.
class PeelerPool {
public:
    std::unique_ptr<Peeler> take() {
        std::lock_guard<std::mutex> lock(mutex_);
        if (free_.empty()) return std::make_unique<Peeler>();
        std::unique_ptr<Peeler> p = std::move(free_.back());
        free_.pop_back();
        return p;
    }
    void give(std::unique_ptr<Peeler> p) {
        if (p->footprint() > kMaxPooledBytes) return;
        std::lock_guard<std::mutex> lock(mutex_);
        if (free_.size() < kMaxPooled) free_.push_back(std::move(p));
    }

private:
    static constexpr size_t kMaxPooled = 4;
    static constexpr size_t kMaxPooledBytes = size_t(64) << 20;
    std::mutex mutex_;
    std::vector<std::unique_ptr<Peeler>> free_;
};

PeelerPool& peeler_pool() {
    static PeelerPool pool;
    return pool;
}

void check_piece_duplicates(const PieceJob& job) {
    std::vector<uint64_t> sorted(job.keys, job.keys + job.num_keys);
    std::sort(sorted.begin(), sorted.end());
    auto dup = std::adjacent_find(sorted.begin(), sorted.end());
    if (dup != sorted.end()) throw_duplicate(*dup);
}

// Cuts the piece's key range into blocks of 2^block_log2 keys, as few as leave about block_keys
// keys per block on average (never fewer blocks than one), and counts the keys of each.
void count_blocks(PieceJob& job, uint64_t block_keys) {
    const uint64_t first = job.piece.first_key;
    uint64_t span = 0;  // last key - first key
    for (uint32_t i = 0; i < job.num_keys; ++i) span = std::max(span, job.keys[i] - first);
    const uint64_t max_blocks = std::max<uint64_t>(1, job.num_keys / block_keys);
    uint32_t log2 = 63;  // one block: the whole range, whatever keys are queried
    if (max_blocks > 1)
        for (log2 = 0; (span >> log2) + 1 > max_blocks;) ++log2;
    job.piece.block_log2 = log2;
    job.keys_per_block.assign(max_blocks > 1 ? size_t(span >> log2) + 1 : 1, 0);
    for (uint32_t i = 0; i < job.num_keys; ++i)
        ++job.keys_per_block[std::min<uint64_t>((job.keys[i] - first) >> log2, job.keys_per_block.size() - 1)];
}

// Block b's slice of the S * L first cells, in proportion to the keys before it: the last block
// holds the last key, so its slice, like every one before it, starts below S * L.
void slice_first_cells(PieceJob& job) {
    Piece& p = job.piece;
    const uint64_t first_cells = uint64_t(p.segment_count) << p.segment_length_log2;
    p.block_starts.resize(job.keys_per_block.size() + 1);
    uint64_t before = 0;
    for (size_t b = 0; b < job.keys_per_block.size(); ++b) {
        p.block_starts[b] = uint32_t(before * first_cells / job.num_keys);
        before += job.keys_per_block[b];
    }
    p.block_starts.back() = uint32_t(first_cells);
}

void build_piece(PieceJob& job, size_t piece_index, const BuildOptions& o, Peeler& peeler, unsigned threads) {
    if (job.num_keys == 0) {  // no keys, no table: every key reads its mask alone
        job.piece.hash_seed = piece_hash_seed(o.seed, piece_index, 0);
        return;
    }
    const uint32_t cell_mask = low_bits_mask(o.cell_bits);
    count_blocks(job, o.block_keys ? o.block_keys : kDefaultBlockKeys);
    for (uint32_t attempt = 0; attempt < kMaxAttempts; ++attempt) {
        PieceShape shape = piece_shape(job.num_keys, o.arity, attempt);
        Piece& p = job.piece;
        p.num_keys = job.num_keys;
        p.segment_count = shape.segment_count;
        p.segment_length_log2 = shape.segment_length_log2;
        p.hash_seed = piece_hash_seed(o.seed, piece_index, attempt);
        uint64_t num_cells = piece_num_cells(p, o.arity);
        if (num_cells >= (uint64_t(1) << 32)) throw std::invalid_argument("piece too large; lower piece_keys");
        slice_first_cells(job);
        PieceGeometry g = piece_geometry(p);
        bool peeled = o.arity == 3 ? peeler.peel<3>(job, g, uint32_t(num_cells), threads)
                                   : peeler.peel<4>(job, g, uint32_t(num_cells), threads);
        if (peeled) {
            if (o.arity == 3)
                peeler.assign<3>(g, cell_mask, job.table);
            else
                peeler.assign<4>(g, cell_mask, job.table);
            return;
        }
        // Duplicate keys share every cell and can never peel: look for them once, on the first
        // failure, instead of paying a sort on every build.
        if (attempt == 0 && !job.keys_known_distinct) check_piece_duplicates(job);
    }
    throw std::runtime_error("filter construction failed after " + std::to_string(kMaxAttempts) +
                             " seeds for piece " + std::to_string(piece_index));
}

// Split keys into pieces of about `piece_keys` keys over contiguous key ranges. Sorted input
// (the common case: positions of a layer) is sliced in place and checked for duplicates on the
// way; other input is bucketed by boundaries taken from a sorted sample.
std::vector<PieceJob> partition(const uint64_t* keys, const uint32_t* values, size_t n, const BuildOptions& o,
                                std::vector<uint64_t>& keys_copy, std::vector<uint32_t>& values_copy) {
    const uint64_t piece_keys = o.piece_keys ? o.piece_keys : kDefaultPieceKeys;
    const size_t num_pieces = std::max<size_t>(1, size_t((n + piece_keys / 2) / piece_keys));

    bool sorted = true;
    for (size_t i = 1; i < n && sorted; ++i) {
        if (keys[i] == keys[i - 1]) throw_duplicate(keys[i]);
        sorted = keys[i] > keys[i - 1];
    }

    std::vector<uint64_t> bounds;  // first keys of pieces 1 .. num_pieces - 1
    if (sorted) {
        for (size_t i = 1; i < num_pieces; ++i) bounds.push_back(keys[i * n / num_pieces]);
    } else {
        size_t samples = std::min<size_t>(n, 64 * num_pieces);
        std::vector<uint64_t> sample(samples);
        for (size_t i = 0; i < samples; ++i) sample[i] = keys[splitmix64(o.seed + i) % n];
        std::sort(sample.begin(), sample.end());
        for (size_t i = 1; i < num_pieces; ++i) {
            uint64_t b = sample[i * samples / num_pieces];
            if (b > (bounds.empty() ? 0 : bounds.back())) bounds.push_back(b);
        }
    }

    std::vector<PieceJob> jobs(bounds.size() + 1);
    for (size_t p = 0; p < jobs.size(); ++p) jobs[p].piece.first_key = p == 0 ? 0 : bounds[p - 1];

    if (bounds.empty()) {  // one piece: build straight from the caller's arrays
        jobs[0].keys = keys;
        jobs[0].values = values;
        jobs[0].num_keys = uint32_t(n);
        jobs[0].keys_known_distinct = sorted;
        if (n > kMaxPieceKeys) throw std::invalid_argument("too many keys for one piece");
        return jobs;
    }
    // Random keys land in random pieces: a binary search mispredicts at every level, so search
    // without branches (the comparison's result moves the base).
    auto piece_of = [&](uint64_t key) -> size_t {  // the number of bounds <= key
        if (bounds.empty()) return 0;
        const uint64_t* base = bounds.data();
        for (size_t len = bounds.size(); len > 1; len -= len / 2)
            base = base[len / 2] <= key ? base + len / 2 : base;
        return size_t(base - bounds.data()) + (*base <= key);
    };
    std::vector<size_t> start(jobs.size() + 1, 0);
    if (sorted) {
        for (size_t p = 1; p < jobs.size(); ++p)
            start[p] = size_t(std::lower_bound(keys, keys + n, bounds[p - 1]) - keys);
        start[jobs.size()] = n;
    } else {
        for (size_t i = 0; i < n; ++i) ++start[piece_of(keys[i]) + 1];
        for (size_t p = 0; p < jobs.size(); ++p) start[p + 1] += start[p];
        keys_copy.resize(n);
        values_copy.resize(n);
        std::vector<size_t> fill(start.begin(), start.end() - 1);
        for (size_t i = 0; i < n; ++i) {
            size_t at = fill[piece_of(keys[i])]++;
            keys_copy[at] = keys[i];
            values_copy[at] = values[i];
        }
        keys = keys_copy.data();
        values = values_copy.data();
    }
    for (size_t p = 0; p < jobs.size(); ++p) {
        size_t count = start[p + 1] - start[p];
        if (count > kMaxPieceKeys) throw std::invalid_argument("keys too unevenly spread for their pieces");
        jobs[p].keys = keys + start[p];
        jobs[p].values = values + start[p];
        jobs[p].num_keys = uint32_t(count);
        jobs[p].keys_known_distinct = sorted;
    }
    return jobs;
}

}  // namespace

uint64_t piece_num_cells(const Piece& piece, uint32_t arity) {
    if (piece.segment_count == 0) return 0;
    return (uint64_t(piece.segment_count) + arity - 1) << piece.segment_length_log2;
}

Filter build_filter(const uint64_t* keys, const uint32_t* values, size_t n, const BuildOptions& options) {
    check_options(options);
    const uint32_t limit = uint32_t(1) << options.value_bits;  // value_bits <= 16
    for (size_t i = 0; i < n; ++i)
        if (values[i] >= limit)
            throw std::invalid_argument("value " + std::to_string(values[i]) + " at index " + std::to_string(i) +
                                        " does not fit in value_bits = " + std::to_string(options.value_bits));

    if (options.format_version == kFormatVersion) return detail::build_chunked(keys, values, n, options);

    std::vector<uint64_t> keys_copy;
    std::vector<uint32_t> values_copy;
    std::vector<PieceJob> jobs = partition(keys, values, n, options, keys_copy, values_copy);
    // Pieces are independent: hand them out to threads; each result depends only on its piece.
    // Threads left over (fewer pieces than threads) work inside the pieces.
    const unsigned threads_per_piece = std::max<unsigned>(1, options.threads / unsigned(jobs.size()));
    std::vector<std::exception_ptr> errors(jobs.size());
    std::atomic<size_t> next{0};
    auto worker = [&] {
        std::unique_ptr<Peeler> peeler = peeler_pool().take();
        for (size_t p; (p = next.fetch_add(1)) < jobs.size();) {
            try {
                build_piece(jobs[p], p, options, *peeler, threads_per_piece);
            } catch (...) {
                errors[p] = std::current_exception();
            }
        }
        peeler_pool().give(std::move(peeler));
    };
    unsigned threads = std::max(1u, std::min<unsigned>(options.threads, unsigned(jobs.size())));
    std::vector<std::thread> pool;
    for (unsigned i = 1; i < threads; ++i) pool.emplace_back(worker);
    worker();
    for (auto& t : pool) t.join();
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);  // the lowest piece's error, whatever the thread count

    Filter f;
    f.version = kFuseFormatVersion;
    f.value_bits = options.value_bits;
    f.cell_bits = options.cell_bits;
    f.arity = options.arity;
    f.seed = options.seed;
    f.num_keys = n;
    uint64_t total = 0;
    for (auto& job : jobs) {
        job.piece.cell_offset = total;
        total += job.table.size();
        f.pieces.push_back(job.piece);
    }
    if (jobs.size() == 1) {
        f.cells = std::move(jobs[0].table);
    } else {
        f.cells.reserve(total);
        for (auto& job : jobs) f.cells.insert(f.cells.end(), job.table.begin(), job.table.end());
    }
    return f;
}

}  // namespace wl
