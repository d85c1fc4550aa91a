//! `blackbox`: the reader command line. All logic lives in the `reader`
//! library (`reader::cli`); this only runs it.

fn main() {
    std::process::exit(reader::cli::main());
}
