//! Runs first (test binaries run in name order and `cargo test` stops at the first that
//! fails): on a machine without QEMU the test command fails at once, naming the one
//! package to install, instead of many tests failing one by one. Everything else the
//! tests need is set up by themselves (the kernel's target is added by the kernel build).
#[test]
fn qemu_is_installed() {
    assert!(
        kmbench::host::find_qemu().is_some(),
        "qemu-system-x86_64 not found (the tests boot guests under QEMU/TCG): install it \
         (Debian/Ubuntu: apt-get install qemu-system-x86), or set KMBENCH_QEMU to its path"
    );
}
