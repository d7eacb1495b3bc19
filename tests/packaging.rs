//! What ships around the code: the README's scripts (`scripts/`), the
//! container's entry point and compose file, and the library's shape (no
//! binary-only crates in `src/`).

mod container;
mod deb;
mod image_caps;
mod library_shape;
mod notify;
mod scripts;
mod unit;
