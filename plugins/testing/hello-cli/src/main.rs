//! A plain WASI command: the most common wrong build a plugin author makes
//! (`cargo new` without `--lib`). `wasmgate plugins check` must reject it.

fn main() {
    println!("hello from a command, not a plugin");
}
