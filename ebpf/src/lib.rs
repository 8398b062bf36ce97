//! XDP programs (C, built by `build.rs`) and their typed userspace handles.
