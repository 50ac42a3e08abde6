// A thread's simdjson stage 1 for one text at a time, shared by the two
// readers of a chat's bytes that walk its tokens (content_hash.cpp,
// chat_tree.cpp).
//
// Stage 1 (the runtime-chosen SIMD kernel) lists where every token of a
// text starts; simdjson's parse_string unescapes a string from it. Both
// need buffers sized by the text: the token list (4 bytes a byte of text)
// and room for the unescaped strings. They are kept between texts, as
// making them for each chat cost more than the scan, but not after a text
// of over KEEP_BYTES: one 60 MB chat would otherwise hold ~300 MB on each
// thread for the life of the process.
#ifndef PS_STAGE1_HPP
#define PS_STAGE1_HPP

#include <simdjson.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace ps
{

class stage1
{
  public:
    // Texts up to this many bytes leave their buffers for the next.
    static constexpr size_t KEEP_BYTES = (size_t)4 << 20;

    // Scans `len` bytes at `text` (simdjson::SIMDJSON_PADDING readable
    // bytes after them); false when they are not UTF-8 JSON tokens stage 1
    // accepts, or out of memory (no exception escapes).
    bool scan(const uint8_t *text, size_t len) noexcept
    {
        if (len == 0 || len > 0xFFFFFFF0u)
            return false;
        try {
            if (!impl_ || impl_->capacity() < len) {
                std::unique_ptr<simdjson::internal::dom_parser_implementation> impl;
                if (simdjson::get_active_implementation()->create_dom_parser_implementation(
                        std::max<size_t>(len, 1 << 16), MAX_DEPTH, impl))
                    return false;
                impl_ = std::move(impl);
            }
            // the unescaping writes up to SIMDJSON_PADDING bytes past what
            // it unescapes, never more than the text
            if (unescaped_.size() < len + 2 * simdjson::SIMDJSON_PADDING)
                unescaped_.resize(len + 2 * simdjson::SIMDJSON_PADDING);
        } catch (...) { // std::bad_alloc
            return false;
        }
        len_ = len;
        return impl_->stage1(text, len, simdjson::stage1_mode::regular) == simdjson::SUCCESS;
    }

    // The scan's tokens: n() starts, in order.
    const uint32_t *tokens() const
    {
        return impl_->structural_indexes.get();
    }
    uint32_t n() const
    {
        return impl_->n_structural_indexes;
    }

    // simdjson's unescaping of the string whose opening quote is at src-1,
    // into dst (room: unescaped() holds the text's length and the padding);
    // the end of what it wrote, or nullptr for a bad escape.
    uint8_t *unescape(const uint8_t *src, uint8_t *dst) const
    {
        return impl_->parse_string(src, dst);
    }
    uint8_t *unescaped()
    {
        return unescaped_.data();
    }

    // Done with the text: its buffers go if it was a big one.
    void done()
    {
        if (len_ <= KEEP_BYTES)
            return;
        impl_.reset();
        std::vector<uint8_t>().swap(unescaped_);
        len_ = 0;
    }

  private:
    // the parser's depth (for stage 2, never run): any
    static constexpr size_t MAX_DEPTH = 64;
    std::unique_ptr<simdjson::internal::dom_parser_implementation> impl_;
    std::vector<uint8_t> unescaped_;
    size_t len_ = 0;
};

} // namespace ps

#endif
