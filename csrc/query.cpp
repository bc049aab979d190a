// The scalar reference: every SIMD and threaded decoder is tested byte-identical to this.
// The range decoders hand runs of keys to the SIMD kernels (decode.h) unless the active ISA is
// "scalar"; the scalar paths below are the reference and stay as they are.
#include <algorithm>
#include <thread>
#include <vector>

#include "decode.h"
#include "hash.h"
#include "weightless.h"

namespace wl {
namespace {

// The piece holding `key`: the last one whose first_key <= key.
size_t find_piece(const Filter& f, uint64_t key) {
    auto after = std::upper_bound(f.pieces.begin(), f.pieces.end(), key,
                                  [](uint64_t k, const Piece& p) { return k < p.first_key; });
    return size_t(after - f.pieces.begin()) - 1;
}

// The chunk holding `key` (version 3, at least one chunk): the last one whose first_key <= key.
size_t find_chunk(const Filter& f, uint64_t key) {
    auto after = std::upper_bound(f.chunks.begin(), f.chunks.end(), key,
                                  [](uint64_t k, const Chunk& c) { return k < c.first_key; });
    return size_t(after - f.chunks.begin()) - 1;
}

// The word of a key in the chunked layout. Without chunks (no keys) every key reads its mask
// under the filter's seed.
inline uint32_t chunk_word(const Filter& f, const Chunk* c, uint64_t key, uint32_t cell_mask) {
    KeyHash h = hash_key(key, c ? c->hash_seed : f.seed);
    uint32_t w = key_mask(h, cell_mask);
    if (!c) return w;
    uint32_t cells[4];
    chunk_cells(h, c->num_cells, cells);
    const uint32_t* table = f.cells.data() + c->cell_offset;
    for (uint32_t j = 0; j < f.arity; ++j) w ^= table[cells[j]];
    return w;
}

uint32_t word_of(const Filter& f, uint64_t key);

struct PieceReader {
    const Piece& piece;
    const uint32_t* table;
    PieceGeometry geometry;
    uint32_t arity;
    uint32_t cell_mask;
    bool empty;

    PieceReader(const Filter& f, const Piece& p)
        : piece(p), table(f.cells.data() + p.cell_offset), geometry(piece_geometry(p)), arity(f.arity),
          cell_mask(low_bits_mask(f.cell_bits)), empty(p.segment_count == 0) {}

    uint32_t word(uint64_t key) const {
        KeyHash h = hash_key(key, piece.hash_seed);
        uint32_t w = key_mask(h, cell_mask);
        if (empty) return w;  // a piece without keys has no cells: XOR over none is 0
        uint32_t cells[4];
        key_cells(h, first_cell(h, first_cells_of_block(piece, block_of(piece, key))), geometry, arity, cells);
        for (uint32_t j = 0; j < arity; ++j) w ^= table[cells[j]];
        return w;
    }
};

inline int32_t value_of(uint32_t word, uint32_t value_bits) {
    return (word >> value_bits) == 0 ? int32_t(word) : -1;
}

// Calls visit(word) for the keys begin, begin + 1, ..., end - 1 in order.
template <typename Visit>
void for_each_word(const Filter& f, uint64_t begin, uint64_t end, Visit&& visit) {
    if (begin >= end) return;
    if (f.version == 3) {
        const uint32_t cell_mask = low_bits_mask(f.cell_bits);
        if (f.chunks.empty()) {
            for (uint64_t key = begin; key < end; ++key) visit(chunk_word(f, nullptr, key, cell_mask));
            return;
        }
        for (size_t c = find_chunk(f, begin); begin < end; ++c) {
            uint64_t stop = c + 1 < f.chunks.size() ? std::min(end, f.chunks[c + 1].first_key) : end;
            for (uint64_t key = begin; key < stop; ++key) visit(chunk_word(f, &f.chunks[c], key, cell_mask));
            begin = stop;
        }
        return;
    }
    for (size_t p = find_piece(f, begin); begin < end; ++p) {
        uint64_t stop = p + 1 < f.pieces.size() ? std::min(end, f.pieces[p + 1].first_key) : end;
        PieceReader reader(f, f.pieces[p]);
        for (uint64_t key = begin; key < stop; ++key) visit(reader.word(key));
        begin = stop;
    }
}

// Calls run_fn(run, offset) for runs covering the keys begin, ..., end - 1 in order, where offset
// is the run's first key minus begin. A run lies inside one block of one piece and does not
// cross a multiple of 2^32, so a kernel sees constant high 32 bits of the key and one slice of
// first cells.
// Runs of the chunked layout: one chunk at a time (or the whole range without chunks). The
// narrowed copy of the cells (RunCells) covers every chunk the range reads, made once.
template <typename RunFn>
void for_each_chunk_run(const Filter& f, uint64_t begin, uint64_t end, RunFn&& run_fn) {
    const uint64_t first = begin;
    detail::Run run{};
    run.chunked = true;
    run.arity = f.arity;
    run.cell_mask = low_bits_mask(f.cell_bits);
    auto emit = [&](uint64_t b, uint64_t e) {  // split where the high 32 bits change
        while (b < e) {
            const uint64_t next_high = (b | uint64_t(0xFFFFFFFF)) + 1;  // 0 after the last one
            uint64_t stop = next_high == 0 ? e : std::min(e, next_high);
            run.key_hi = uint32_t(b >> 32);
            run.key_lo = uint32_t(b);
            run.count = stop - b;
            run_fn(run, b - first);
            b = stop;
        }
    };
    if (f.chunks.empty()) {
        run.table = nullptr;
        run.num_cells = 0;
        run.cells = nullptr;
        run.cell_bytes = 4;
        run.seed_lo = uint32_t(f.seed);
        run.seed_hi = uint32_t(f.seed >> 32);
        emit(begin, end);
        return;
    }
    const size_t c0 = find_chunk(f, begin), c1 = find_chunk(f, end - 1);
    const uint64_t base = f.chunks[c0].cell_offset;
    const uint64_t span = f.chunks[c1].cell_offset + f.chunks[c1].num_cells - base;
    const detail::RunCells cells(f.cells.data() + base, span, low_bits_mask(f.cell_bits), end - begin);
    for (size_t c = c0; c <= c1; ++c) {
        const Chunk& chunk = f.chunks[c];
        uint64_t stop = c + 1 < f.chunks.size() ? std::min(end, f.chunks[c + 1].first_key) : end;
        run.table = f.cells.data() + chunk.cell_offset;
        run.num_cells = chunk.num_cells;
        run.cells = static_cast<const uint8_t*>(cells.data()) + (chunk.cell_offset - base) * cells.bytes();
        run.cell_bytes = cells.bytes();
        run.seed_lo = uint32_t(chunk.hash_seed);
        run.seed_hi = uint32_t(chunk.hash_seed >> 32);
        emit(begin, stop);
        begin = stop;
    }
}

template <typename RunFn>
void for_each_run(const Filter& f, uint64_t begin, uint64_t end, RunFn&& run_fn) {
    if (begin >= end) return;
    if (f.version == 3) return for_each_chunk_run(f, begin, end, run_fn);
    const uint64_t first = begin;
    for (size_t p = find_piece(f, begin); begin < end; ++p) {
        const Piece& piece = f.pieces[p];
        uint64_t stop = p + 1 < f.pieces.size() ? std::min(end, f.pieces[p + 1].first_key) : end;
        detail::Run run;
        run.chunked = false;
        run.table = f.cells.data() + piece.cell_offset;
        run.num_cells = piece.segment_count == 0 ? 0 : piece_num_cells(piece, f.arity);
        run.seed_lo = uint32_t(piece.hash_seed);
        run.seed_hi = uint32_t(piece.hash_seed >> 32);
        run.geometry = piece_geometry(piece);
        run.arity = f.arity;
        run.cell_mask = low_bits_mask(f.cell_bits);
        run.first = {0, 0};
        const detail::RunCells cells(run.table, run.num_cells, run.cell_mask, stop - begin);
        run.cells = cells.data();
        run.cell_bytes = cells.bytes();
        while (begin < stop) {
            uint64_t e = stop;
            if (run.num_cells != 0) {
                uint32_t block = block_of(piece, begin);
                run.first = first_cells_of_block(piece, block);
                if (block + 1 < piece.num_blocks())  // the block's last key, then the next block
                    e = std::min(e, piece.first_key + ((uint64_t(block) + 1) << piece.block_log2));
            }
            uint64_t last_same_high = begin | 0xFFFFFFFFull;  // the last key whose high 32 bits are begin's
            if (e - 1 > last_same_high) e = last_same_high + 1;
            run.key_hi = uint32_t(begin >> 32);
            run.key_lo = uint32_t(begin);
            run.count = e - begin;
            run_fn(run, begin - first);
            begin = e;
        }
    }
}

// Runs work(b, e, i) over `threads` consecutive slices [b, e) of [begin, end), slice i on its own thread.
template <typename Work>
void split_range(uint64_t begin, uint64_t end, unsigned threads, Work&& work) {
    uint64_t total = end > begin ? end - begin : 0;
    // Below ~64k positions a thread costs more than it saves.
    threads = unsigned(std::max<uint64_t>(1, std::min<uint64_t>(threads, total / 65536)));
    std::vector<std::thread> pool;
    for (unsigned i = 1; i < threads; ++i)
        pool.emplace_back(work, begin + total * i / threads, begin + total * (i + 1) / threads, i);
    work(begin, begin + total / threads, 0u);
    for (auto& t : pool) t.join();
}

uint32_t word_of(const Filter& f, uint64_t key) {
    if (f.version == 3)
        return chunk_word(f, f.chunks.empty() ? nullptr : &f.chunks[find_chunk(f, key)], key, low_bits_mask(f.cell_bits));
    return PieceReader(f, f.pieces[find_piece(f, key)]).word(key);
}

}  // namespace

void query_raw(const Filter& f, const uint64_t* keys, size_t n, uint32_t* words) {
    for (size_t i = 0; i < n; ++i) words[i] = word_of(f, keys[i]);
}

void query_values(const Filter& f, const uint64_t* keys, size_t n, int32_t* values) {
    for (size_t i = 0; i < n; ++i) values[i] = value_of(word_of(f, keys[i]), f.value_bits);
}

void decode_range(const Filter& f, uint64_t begin, uint64_t end, int32_t* out) {
    if (const detail::Kernels* k = detail::active_kernels()) {
        for_each_run(f, begin, end, [&](const detail::Run& run, uint64_t at) { k->values(run, f.value_bits, out + at); });
        return;
    }
    for_each_word(f, begin, end, [&](uint32_t word) { *out++ = value_of(word, f.value_bits); });
}

void decode_weights(const Filter& f, uint64_t begin, uint64_t end, const float* codebook, uint32_t codebook_size,
                    float* out, unsigned threads) {
    codebook_size = uint32_t(std::min<uint64_t>(codebook_size, uint64_t(1) << f.value_bits));
    const detail::Kernels* k = detail::active_kernels();  // on this thread: a bad WEIGHTLESS_ISA throws here
    split_range(begin, end, threads, [&](uint64_t b, uint64_t e, unsigned) {
        float* dst = out + (b - begin);
        if (k) {
            for_each_run(f, b, e, [&](const detail::Run& run, uint64_t at) {
                k->weights(run, codebook, codebook_size, dst + at);
            });
            return;
        }
        // A word below codebook_size has its check bits clear and names a cluster.
        for_each_word(f, b, e, [&](uint32_t word) { *dst++ = word < codebook_size ? codebook[word] : 0.0f; });
    });
}

uint64_t count_decoded(const Filter& f, uint64_t begin, uint64_t end, uint32_t codebook_size, unsigned threads) {
    codebook_size = uint32_t(std::min<uint64_t>(codebook_size, uint64_t(1) << f.value_bits));
    const detail::Kernels* k = detail::active_kernels();
    std::vector<uint64_t> counts(std::max(1u, threads), 0);
    split_range(begin, end, threads, [&](uint64_t b, uint64_t e, unsigned i) {
        uint64_t count = 0;
        if (k) {
            for_each_run(f, b, e, [&](const detail::Run& run, uint64_t) { count += k->count(run, codebook_size); });
            counts[i] = count;
            return;
        }
        for_each_word(f, b, e, [&](uint32_t word) { count += word < codebook_size; });
        counts[i] = count;
    });
    uint64_t total = 0;
    for (uint64_t c : counts) total += c;
    return total;
}

}  // namespace wl
