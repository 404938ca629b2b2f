//! The `sipring` command line.

fn main() {
    eprintln!("sipring: the proxy is not built yet (see README.md)");
    std::process::exit(2);
}
