// Built with AddressSanitizer and UndefinedBehaviorSanitizer by NativeDequantizeTests together with
// src/VlPeft/Native/dequantize.cpp: random weights in exact-size heap buffers (any read or write past them is reported),
// random blocks of rows × columns or random row lists (embedding lookups), block sizes including ones the vector paths
// cannot take, every instruction set the CPU has, fp32 and bf16, plain and double-quantized scales; each value against a
// scalar reference written here.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

extern "C" void vlpeft_dequantize_4bit(const uint8_t*, const float*, const uint8_t*, const float*, const float*, int64_t, float,
                                       const float*, int64_t, int64_t, int64_t, int64_t, const int64_t*, int64_t, int64_t, void*, int, int);
extern "C" void vlpeft_dequantize_int8(const int8_t*, const float*, int64_t, int64_t, int64_t, const int64_t*, int64_t, int64_t, void*, int, int);

static uint16_t bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if (f != f) return 0x7FC0;
    return (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

static bool same(const void* out, int type, int64_t i, float expected) {
    return type == 1 ? static_cast<const uint16_t*>(out)[i] == bf16(expected) : static_cast<const float*>(out)[i] == expected;
}

int main() {
    srand(1);
    const int64_t block_sizes[] = {16, 32, 48, 64, 128, 256, 6};
    const int64_t nested = 256;
    const float offset = 0.125f;
    long checked = 0;
    for (int iter = 0; iter < 2000; iter++) {
        int64_t weight_rows = 1 + rand() % 40, in = 1 + rand() % 300, n = weight_rows * in;
        int64_t block = block_sizes[rand() % 7], blocks = (n + block - 1) / block, nested_blocks = (blocks + nested - 1) / nested;
        auto* packed = static_cast<uint8_t*>(malloc((n + 1) / 2));
        auto* absmax = static_cast<float*>(malloc(blocks * 4));
        auto* codes = static_cast<uint8_t*>(malloc(blocks));
        auto* nested_code = static_cast<float*>(malloc(256 * 4));
        auto* nested_absmax = static_cast<float*>(malloc(nested_blocks * 4));
        auto* q = static_cast<int8_t*>(malloc(n));
        auto* row_absmax = static_cast<float*>(malloc(weight_rows * 4));
        float code[16];
        for (int64_t i = 0; i < (n + 1) / 2; i++) packed[i] = (uint8_t)rand();
        for (int64_t i = 0; i < blocks; i++) absmax[i] = (rand() % 1000) / 512.f, codes[i] = (uint8_t)rand();
        for (int i = 0; i < 256; i++) nested_code[i] = (i - 128) / 127.f;
        for (int64_t i = 0; i < nested_blocks; i++) nested_absmax[i] = (rand() % 100) / 37.f;
        for (int i = 0; i < 16; i++) code[i] = (i - 7.5f) / 7.3f;
        for (int64_t i = 0; i < n; i++) q[i] = (int8_t)(rand() % 255 - 127);
        for (int64_t i = 0; i < weight_rows; i++) row_absmax[i] = (rand() % 1000) / 99.f;

        int64_t row0 = rand() % weight_rows, rows = 1 + rand() % (weight_rows - row0), col0 = rand() % in, cols = 1 + rand() % (in - col0);
        bool double_quant = rand() % 2;
        int type = rand() % 2, isa = rand() % 3;
        void* out = malloc(rows * cols * (type == 1 ? 2 : 4));
        // Every other iteration picks rows by id (repeats and any order) instead of a range.
        int64_t* ids = iter % 2 ? static_cast<int64_t*>(malloc(rows * 8)) : nullptr;
        for (int64_t r = 0; ids && r < rows; r++) ids[r] = rand() % weight_rows;
        auto row_of = [&](int64_t r) { return ids ? ids[r] : row0 + r; };

        vlpeft_dequantize_4bit(packed, double_quant ? nullptr : absmax, codes, nested_code, nested_absmax, nested, offset, code, block,
                               in, row0, rows, ids, col0, cols, out, type, isa);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++, checked++) {
                int64_t v = row_of(r) * in + col0 + c, b = v / block;
                int level = (v & 1) ? (packed[v >> 1] & 15) : (packed[v >> 1] >> 4);
                float scale = double_quant ? nested_code[codes[b]] * nested_absmax[b / nested] + offset : absmax[b];
                if (!same(out, type, r * cols + c, code[level] * scale)) {
                    printf("4-bit mismatch: iteration %d, row %ld, column %ld\n", iter, (long)r, (long)c);
                    return 1;
                }
            }
        vlpeft_dequantize_int8(q, row_absmax, in, row0, rows, ids, col0, cols, out, type, isa);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++, checked++)
                if (!same(out, type, r * cols + c, (float)q[row_of(r) * in + col0 + c] * (row_absmax[row_of(r)] / 127.0f))) {
                    printf("int8 mismatch: iteration %d, row %ld, column %ld\n", iter, (long)r, (long)c);
                    return 1;
                }
        free(ids), free(out), free(packed), free(absmax), free(codes), free(nested_code), free(nested_absmax), free(q), free(row_absmax);
    }
    printf("ok: %ld values\n", checked);
    return 0;
}
