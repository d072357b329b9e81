//! Entry points for the fuzz targets in `fuzz/` (not a stable API).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use crate::EndpointConfig;

/// Read fuzz bytes as the endpoint's TOML and compile what parses: any text
/// gives a configuration or an error, never a panic. Compiling reads files
/// the text names (zone files, TLS files) but sends nothing.
pub fn endpoint_toml(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else { return };
    if let Ok(config) = EndpointConfig::from_toml(text, "/nonexistent/signpost-fuzz/endpoint.toml") {
        let _ = config.compile();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_do_not_panic() {
        endpoint_toml(
            b"[recursive]\nservers = [\"127.0.0.1:5300\"]\n[[vpcs]]\nid = \"vpc-a\"\ncidrs = [\"127.0.1.0/24\"]\n",
        );
        endpoint_toml(b"[[vpcs]]\nid = 3\n");
        endpoint_toml(&[0xff]);
    }
}
