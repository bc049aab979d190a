// Construction of the chunked layout (format version 3): sort, cut into chunks of consecutive
// keys, and solve each chunk's GF(2) system by lazy Gaussian elimination.
//
// A chunk of k keys and m cells is a k x m system: key i's row has ones at its `arity` cells (a
// cell hit twice cancels) and right-hand side value_i ^ mask_i. Lazy elimination (Genuzio,
// Ottaviano and Vigna 2016): every cell starts idle; an equation with one idle cell left solves
// that cell and is XORed out of the other equations holding it; with none left, some idle cell
// (the one in most equations) becomes active. Equations with no idle cells form a dense system
// over the active cells only (~15% of the cells at 1.03 cells per key, measured), solved by
// forward elimination on short bit rows. Each solved cell then follows, in the order solved,
// from its original equation, whose other cells are active or were solved before it.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>

#include "chunked.h"
#include "hash.h"

namespace wl {

uint32_t chunk_num_cells(uint32_t k, uint32_t arity, uint32_t attempt) {
    if (k == 0) return 0;
    // Measured (docs/RETRIEVAL.md): with 4 cells per key, k + 3% + 2 cells solve a 1024-key chunk
    // with the first seed ~87% of the time, a 100-key chunk ~50%; 3 cells per key need ~11% more
    // than k. Every 4 failed seeds add ~3%.
    const uint32_t slack = arity == 4 ? (k * 31 + 1023) / 1024 + 2 : (k * 113 + 1023) / 1024 + 3;
    return k + slack + (attempt / 4) * (k / 32 + 1);
}

namespace detail {
namespace {

// Scratch for one chunk's system, reused across chunks and attempts on one thread.
class ChunkSolver {
public:
    // Solves for the chunk's table; false if this seed's system is singular (or inconsistent).
    bool solve(const KeyHash* hashes, const uint32_t* rhs, uint32_t k, uint32_t m, uint32_t arity,
               uint32_t* table) {
        aw_ = (m + 255) / 256 + 1;  // room for m / 4 + 64 active cells; more fails the attempt
        max_active_ = aw_ * 64;
        cell_.resize(size_t(k) * 4);
        idle_.assign(k, 0);
        original_.resize(k);
        weight_.assign(k, 0);
        value_.assign(rhs, rhs + k);
        bits_.assign(size_t(k) * aw_, 0);
        degree_.assign(m, 0);
        for (uint32_t i = 0; i < k; ++i) {
            uint32_t c[4];
            chunk_cells(hashes[i], m, c);
            uint8_t mask = uint8_t((1u << arity) - 1);
            for (uint32_t a = 0; a < arity; ++a)
                for (uint32_t b = a + 1; b < arity; ++b)
                    if (c[a] == c[b] && (mask >> a & 1) && (mask >> b & 1)) mask &= uint8_t(~((1u << a) | (1u << b)));
            for (uint32_t j = 0; j < 4; ++j) {
                cell_[size_t(i) * 4 + j] = uint16_t(c[j]);
                if (mask >> j & 1) ++degree_[c[j]];
            }
            idle_[i] = mask;
            weight_[i] = uint8_t((0x4332322132212110ull >> (4 * mask)) & 0xF);  // popcount of 4 bits
        }
        // Cell -> equations holding it: equation << 2 | the cell's slot in it.
        start_.assign(size_t(m) + 1, 0);
        for (uint32_t v = 0; v < m; ++v) start_[v + 1] = start_[v] + degree_[v];
        occ_.resize(start_[m]);
        fill_.assign(start_.begin(), start_.end() - 1);
        for (uint32_t i = 0; i < k; ++i)
            for (uint32_t j = 0; j < 4; ++j)
                if (idle_[i] >> j & 1) occ_[fill_[cell_[size_t(i) * 4 + j]]++] = i << 2 | j;
        // Activation order: most equations first (a cell's count of idle equations never changes
        // while it is idle, so this static order is the dynamic one); ties by cell index.
        uint32_t max_degree = 0;
        for (uint32_t v = 0; v < m; ++v) max_degree = std::max(max_degree, degree_[v]);
        fill_.assign(size_t(max_degree) + 2, 0);
        for (uint32_t v = 0; v < m; ++v) ++fill_[max_degree - degree_[v] + 1];
        for (uint32_t d = 1; d <= max_degree + 1; ++d) fill_[d] += fill_[d - 1];
        order_.resize(m);
        for (uint32_t v = 0; v < m; ++v) order_[fill_[max_degree - degree_[v]]++] = v;

        state_.assign(m, kIdle);
        active_.clear();
        solved_.clear();
        solved_cell_.clear();
        dense_.clear();
        stack_.clear();
        done_.assign(k, 0);
        std::copy(idle_.begin(), idle_.end(), original_.begin());
        for (uint32_t i = 0; i < k; ++i)
            if (weight_[i] <= 1) stack_.push_back(i);
        uint32_t remaining = k, next = 0;
        while (remaining > 0) {
            if (!stack_.empty()) {
                uint32_t e = stack_.back();
                stack_.pop_back();
                if (done_[e]) continue;
                done_[e] = 1;
                --remaining;
                if (weight_[e] == 0) {
                    dense_.push_back(e);
                    continue;
                }
                uint32_t v = cell_[size_t(e) * 4 + uint32_t(__builtin_ctz(idle_[e]))];
                idle_[e] = 0;
                weight_[e] = 0;
                state_[v] = kSolved;
                solved_.push_back(e);
                solved_cell_.push_back(v);
                const uint64_t* eb = &bits_[size_t(e) * aw_];
                const uint32_t used = uint32_t(active_.size() + 63) / 64;  // words with active bits so far
                for (uint32_t q = start_[v]; q < start_[v + 1]; ++q) {
                    uint32_t f = occ_[q] >> 2;
                    if (done_[f] || !drop(f, occ_[q] & 3)) continue;
                    uint64_t* fb = &bits_[size_t(f) * aw_];
                    for (uint32_t w = 0; w < used; ++w) fb[w] ^= eb[w];
                    value_[f] ^= value_[e];
                    if (weight_[f] <= 1) stack_.push_back(f);
                }
                continue;
            }
            while (next < m && state_[order_[next]] != kIdle) ++next;
            if (next == m) return false;  // cannot happen: an open equation holds an idle cell
            uint32_t v = order_[next++];
            if (active_.size() == max_active_) return false;
            uint32_t a = uint32_t(active_.size());
            active_.push_back(v);
            state_[v] = kActive;
            for (uint32_t q = start_[v]; q < start_[v + 1]; ++q) {
                uint32_t f = occ_[q] >> 2;
                if (done_[f] || !drop(f, occ_[q] & 3)) continue;
                bits_[size_t(f) * aw_ + a / 64] ^= uint64_t(1) << (a % 64);
                if (weight_[f] <= 1) stack_.push_back(f);
            }
        }

        // The dense system over the active cells, by forward elimination column by column: the
        // rows below the pivot that hold the column take the pivot row, without branches (a
        // mask), and only from the pivot's word on (the rows below are zero before it).
        const uint32_t A = uint32_t(active_.size());
        const uint32_t aw = (A + 63) / 64;  // words that hold active bits
        const uint32_t D = uint32_t(dense_.size());
        prow_.resize(size_t(D) * aw + 1);
        pval_.resize(D);
        pivot_.resize(D);
        for (uint32_t r = 0; r < D; ++r) {
            std::memcpy(&prow_[size_t(r) * aw], &bits_[size_t(dense_[r]) * aw_], aw * sizeof(uint64_t));
            pval_[r] = value_[dense_[r]];
        }
        uint32_t rank = 0;
        for (uint32_t c = 0; c < A && rank < D; ++c) {
            const uint32_t w = c / 64, b = c % 64;
            uint32_t p = rank;
            while (p < D && !((prow_[size_t(p) * aw + w] >> b) & 1)) ++p;
            if (p == D) continue;  // a free column: its cell is 0
            if (p != rank) {
                for (uint32_t i = w; i < aw; ++i) std::swap(prow_[size_t(p) * aw + i], prow_[size_t(rank) * aw + i]);
                std::swap(pval_[p], pval_[rank]);
            }
            const uint64_t* pr = &prow_[size_t(rank) * aw];
            const uint32_t pv = pval_[rank];
            for (uint32_t r = rank + 1; r < D; ++r) {
                uint64_t* row = &prow_[size_t(r) * aw];
                const uint64_t take = uint64_t(0) - ((row[w] >> b) & 1);
                for (uint32_t i = w; i < aw; ++i) row[i] ^= pr[i] & take;
                pval_[r] ^= pv & uint32_t(take);
            }
            pivot_[rank++] = c;
        }
        for (uint32_t r = rank; r < D; ++r)  // rows left all zero: consistent only if 0 = 0
            if (pval_[r] != 0) return false;
        // Back substitution, last pivot first: a pivot row's other bits lie above its pivot.
        x_.assign(A, 0);
        for (uint32_t r = rank; r-- > 0;) x_[pivot_[r]] = pval_[r] ^ parity(&prow_[size_t(r) * aw], pivot_[r]);
        std::fill(table, table + m, 0u);
        for (uint32_t a = 0; a < A; ++a) table[active_[a]] = x_[a];
        // Solved cells in the order they were solved, each from its original equation: its other
        // cells were active or solved before it.
        for (size_t s = 0; s < solved_.size(); ++s) {
            const uint32_t e = solved_[s], v = solved_cell_[s];
            uint32_t word = rhs[e];
            for (uint32_t j = 0; j < 4; ++j) {
                uint32_t c = cell_[size_t(e) * 4 + j];
                if ((original_[e] >> j & 1) && c != v) word ^= table[c];
            }
            table[v] = word;
        }
        return true;
    }

private:
    static constexpr uint8_t kIdle = 0, kActive = 1, kSolved = 2;

    // Removes the idle cell in slot j of equation f; false if that slot is not idle.
    bool drop(uint32_t f, uint32_t j) {
        if (!(idle_[f] >> j & 1)) return false;
        idle_[f] &= uint8_t(~(1u << j));
        --weight_[f];
        return true;
    }

    // XOR of x_[a] over the set bits a of row above bit `skip`.
    uint32_t parity(const uint64_t* row, uint32_t skip) const {
        uint32_t acc = 0;
        for (uint32_t w = skip / 64; w < (x_.size() + 63) / 64; ++w) {  // row holds the words from 0 on
            uint64_t bits = row[w];
            while (bits) {
                uint32_t a = w * 64 + uint32_t(__builtin_ctzll(bits));
                bits &= bits - 1;
                if (a != skip) acc ^= x_[a];
            }
        }
        return acc;
    }

    uint32_t aw_ = 0, max_active_ = 0;
    std::vector<uint16_t> cell_;
    std::vector<uint8_t> idle_, original_, weight_, done_, state_;
    std::vector<uint32_t> value_, degree_, start_, occ_, fill_, order_, active_, solved_, solved_cell_, dense_, stack_;
    std::vector<uint64_t> bits_, prow_;
    std::vector<uint32_t> pivot_, pval_, x_;
};

// Sorts (key, value) pairs by key: one pass scatters them into 2^16 buckets by the top 16 bits
// of key - min that vary, then each bucket (a few dozen pairs for random keys) is sorted in
// cache. Two passes over the data instead of an LSD radix sort's six.
void sort_pairs(std::vector<uint64_t>& keys, std::vector<uint32_t>& values) {
    const size_t n = keys.size();
    if (n < 2) return;
    const auto [lo, hi] = std::minmax_element(keys.begin(), keys.end());
    const uint64_t min = *lo, range = *hi - *lo;
    const unsigned bits = range == 0 ? 0 : 64 - unsigned(__builtin_clzll(range));
    const unsigned bucket_bits = std::min(bits, 16u), shift = bits - bucket_bits;
    std::vector<uint32_t> start((size_t(1) << bucket_bits) + 1, 0);
    for (uint64_t k : keys) ++start[((k - min) >> shift) + 1];
    for (size_t b = 1; b < start.size(); ++b) start[b] += start[b - 1];
    struct Pair {
        uint64_t key;
        uint32_t value;
    };
    std::vector<Pair> pairs(n);
    std::vector<uint32_t> fill(start.begin(), start.end() - 1);
    for (size_t i = 0; i < n; ++i) pairs[fill[(keys[i] - min) >> shift]++] = {keys[i], values[i]};
    for (size_t b = 0; b + 1 < start.size(); ++b)
        if (start[b + 1] - start[b] > 1)
            std::sort(pairs.begin() + start[b], pairs.begin() + start[b + 1],
                      [](const Pair& x, const Pair& y) { return x.key < y.key; });
    for (size_t i = 0; i < n; ++i) {
        keys[i] = pairs[i].key;
        values[i] = pairs[i].value;
    }
}

[[noreturn]] void throw_duplicate(uint64_t key) {
    throw std::invalid_argument("duplicate key " + std::to_string(key) + ": keys must be distinct");
}

}  // namespace

Filter build_chunked(const uint64_t* keys, const uint32_t* values, size_t n, const BuildOptions& o) {
    const uint64_t chunk_keys = o.chunk_keys ? o.chunk_keys : kDefaultChunkKeys;
    if (chunk_keys > kMaxChunkKeys)
        throw std::invalid_argument("chunk_keys must be at most 32768, got " + std::to_string(chunk_keys));
    if (uint64_t(n) >= (uint64_t(1) << 48)) throw std::invalid_argument("too many keys (at most 2^48 - 1)");

    // Sorted keys: sorted input (positions) is used in place; other input is sorted here.
    std::vector<uint64_t> sorted_keys;
    std::vector<uint32_t> sorted_values;
    bool sorted = true;
    for (size_t i = 1; i < n && sorted; ++i) {
        if (keys[i] == keys[i - 1]) throw_duplicate(keys[i]);
        sorted = keys[i] > keys[i - 1];
    }
    if (!sorted) {
        sorted_keys.assign(keys, keys + n);
        sorted_values.assign(values, values + n);
        sort_pairs(sorted_keys, sorted_values);
        for (size_t i = 1; i < n; ++i)
            if (sorted_keys[i] == sorted_keys[i - 1]) throw_duplicate(sorted_keys[i]);
        keys = sorted_keys.data();
        values = sorted_values.data();
    }

    Filter f;
    f.version = kFormatVersion;
    f.value_bits = o.value_bits;
    f.cell_bits = o.cell_bits;
    f.arity = o.arity;
    f.seed = o.seed;
    f.num_keys = n;
    f.chunk_keys = uint32_t(chunk_keys);
    const size_t C = size_t((n + chunk_keys - 1) / chunk_keys);
    f.chunks.resize(C);
    auto chunk_start = [&](size_t i) { return size_t((unsigned __int128)n * i / C); };
    // Chunk i > 0 starts at the key range's boundary b_i, a multiple of 2^s in (last key of chunk
    // i - 1, first key of chunk i]: s is the largest shift every boundary allows, so that the
    // format stores the boundaries' differences in few bits.
    unsigned s = 63;
    for (size_t i = 1; i < C; ++i) {
        size_t at = chunk_start(i);
        s = std::min(s, unsigned(63 - __builtin_clzll(keys[at] ^ keys[at - 1])));
    }
    for (size_t i = 0; i < C; ++i) {
        Chunk& c = f.chunks[i];
        c.first_key = i == 0 ? 0 : (keys[chunk_start(i)] >> s) << s;
        c.num_keys = uint32_t(chunk_start(i + 1) - chunk_start(i));
    }

    // Chunks are independent: threads take them in turn; each result depends only on its chunk.
    std::vector<std::vector<uint32_t>> tables(C);
    std::vector<std::exception_ptr> errors(C);
    std::atomic<size_t> next{0};
    const uint32_t cell_mask = low_bits_mask(o.cell_bits);
    auto worker = [&] {
        ChunkSolver solver;
        std::vector<KeyHash> hashes;
        std::vector<uint32_t> rhs;
        for (size_t i; (i = next.fetch_add(1)) < C;) {
            try {
                Chunk& c = f.chunks[i];
                const size_t from = chunk_start(i);
                hashes.resize(c.num_keys);
                rhs.resize(c.num_keys);
                bool solved = false;
                for (uint32_t attempt = 0; attempt < kMaxChunkAttempts && !solved; ++attempt) {
                    c.attempt = attempt;
                    c.hash_seed = chunk_hash_seed(o.seed, i, attempt);
                    c.num_cells = chunk_num_cells(c.num_keys, o.arity, attempt);
                    for (uint32_t j = 0; j < c.num_keys; ++j) {
                        hashes[j] = hash_key(keys[from + j], c.hash_seed);
                        rhs[j] = values[from + j] ^ key_mask(hashes[j], cell_mask);
                    }
                    tables[i].resize(c.num_cells);
                    solved = solver.solve(hashes.data(), rhs.data(), c.num_keys, c.num_cells, o.arity, tables[i].data());
                }
                if (!solved)
                    throw std::runtime_error("filter construction failed after " + std::to_string(kMaxChunkAttempts) +
                                             " seeds for chunk " + std::to_string(i));
            } catch (...) {
                errors[i] = std::current_exception();
            }
        }
    };
    const unsigned threads = unsigned(std::max<size_t>(1, std::min<size_t>(o.threads ? o.threads : 1, C)));
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back(worker);
    worker();
    for (auto& t : pool) t.join();
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);  // the lowest chunk's error, whatever the thread count

    uint64_t total = 0;
    for (Chunk& c : f.chunks) {
        c.cell_offset = total;
        total += c.num_cells;
    }
    f.cells.resize(total);
    for (size_t i = 0; i < C; ++i) std::copy(tables[i].begin(), tables[i].end(), f.cells.begin() + f.chunks[i].cell_offset);
    return f;
}

}  // namespace detail
}  // namespace wl
