//! A minimal `application/x-www-form-urlencoded` encoder (WHATWG URL
//! standard's serializer), enough for Stripe's bracketed form parameters.
//! Kept in-tree because it is a dozen lines and pulls in no crate.

/// Bytes the serializer leaves as they are; everything else except the
/// space (which becomes `+`) is percent-encoded as `%XX` of its UTF-8 bytes.
fn is_unescaped(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'*' | b'-' | b'.' | b'_')
}

/// Appends `text` to `out` in the form-urlencoded byte serialization.
pub(crate) fn push_encoded(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in text.as_bytes() {
        if is_unescaped(byte) {
            out.push(char::from(byte));
        } else if byte == b' ' {
            out.push('+');
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0F)]));
        }
    }
}

/// Serializes `pairs` in order as `k1=v1&k2=v2…`.
pub(crate) fn encode_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (index, (key, value)) in pairs.into_iter().enumerate() {
        if index > 0 {
            out.push('&');
        }
        push_encoded(&mut out, key);
        out.push('=');
        push_encoded(&mut out, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_spaces_and_reserved_characters_are_escaped() {
        let body = encode_pairs([
            (
                "line_items[0][price_data][product_data][name]",
                "JECP wallet top-up",
            ),
            ("success_url", "https://hub.example/ok?a=1&b=x y"),
        ]);
        assert_eq!(
            body,
            "line_items%5B0%5D%5Bprice_data%5D%5Bproduct_data%5D%5Bname%5D=JECP+wallet+top-up\
             &success_url=https%3A%2F%2Fhub.example%2Fok%3Fa%3D1%26b%3Dx+y"
        );
    }

    #[test]
    fn non_ascii_is_percent_encoded_as_utf8() {
        let mut out = String::new();
        push_encoded(&mut out, "é+~");
        assert_eq!(out, "%C3%A9%2B%7E");
    }

    #[test]
    fn empty_pairs_give_an_empty_body() {
        assert_eq!(encode_pairs(std::iter::empty()), "");
        assert_eq!(encode_pairs([("k", "")]), "k=");
    }
}
