//! Products on Intel AMX tiles: eight tile registers of up to 16 rows × 64 bytes, and one
//! instruction that multiplies two tiles into a third (~1,000 bf16 flops or ~2,000 int8
//! operations per cycle and core, an order of magnitude beyond AVX-512).
//!
//! - [`bf16x3`]: f32 products to within about 2⁻¹⁶ (the sentence embedder's layers).
//! - `int8`: the quantized products of several activation rows, bit for bit what the
//!   AVX-512 VNNI kernels of [`crate::Matrix`] give (prompts and batched decoding).
//!
//! Linux hands out AMX state only to processes that ask (`arch_prctl`); [`bf16_available`]
//! and [`int8_available`] ask once and say whether the CPU, the kernel and that request
//! all allow it.

use std::arch::asm;
use std::sync::OnceLock;

pub mod bf16x3;
pub(crate) mod int8;

pub use bf16x3::Bf16x3Matrix;

/// Whether this process can run AMX bf16 tile products: the CPU has AMX-TILE and
/// AMX-BF16, and the kernel granted the tile state (asked once, on first call).
pub fn bf16_available() -> bool {
    /// CPUID leaf 7 EDX bit of AMX-BF16.
    const AMX_BF16: u32 = 1 << 22;
    cpu_has(AMX_BF16) && tile_state_granted()
}

/// Whether this process can run AMX int8 tile products: the CPU has AMX-TILE and
/// AMX-INT8 (and AVX-512 VNNI, for the sums' scaling), and the kernel granted the tile
/// state.
pub fn int8_available() -> bool {
    /// CPUID leaf 7 EDX bit of AMX-INT8.
    const AMX_INT8: u32 = 1 << 25;
    cpu_has(AMX_INT8) && crate::has_avx512_vnni() && tile_state_granted()
}

/// Whether the CPU has AMX-TILE, AVX-512 F and the AMX feature `bit` (CPUID leaf 7, EDX).
fn cpu_has(bit: u32) -> bool {
    /// CPUID leaf 7 EDX bit of AMX-TILE.
    const AMX_TILE: u32 = 1 << 24;
    if std::arch::x86_64::__cpuid(0).eax < 7 {
        return false;
    }
    let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
    edx & AMX_TILE != 0 && edx & bit != 0 && std::arch::is_x86_feature_detected!("avx512f")
}

/// Asks the kernel, once per process, for the tile state; whether it was granted.
fn tile_state_granted() -> bool {
    static GRANTED: OnceLock<bool> = OnceLock::new();
    *GRANTED.get_or_init(request_tile_state)
}

#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    /// `arch_prctl` request for permission to use an extended state component.
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    /// The XSAVE component of the tile data (TILEDATA).
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with these arguments only changes the process's permissions.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// A tile configuration (palette 1), as `ldtilecfg` reads it.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

/// Loads the shapes of the eight tiles on this thread: per tile, rows and bytes per row
/// (a tile whose rows are 0 is unused).
///
/// # Safety
/// AMX must be available ([`bf16_available`] or [`int8_available`]).
unsafe fn configure_tiles(shapes: &[(usize, usize); 8]) {
    let mut config = TileConfig([0; 64]);
    config.0[0] = 1; // palette 1
    for (tile, &(rows, bytes)) in shapes.iter().enumerate() {
        debug_assert!(rows <= 16 && bytes <= 64);
        config.0[16 + 2 * tile] = bytes as u8; // u16, little-endian
        config.0[48 + tile] = rows as u8;
    }
    unsafe { asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack)) };
}

/// Returns this thread's tile state to its initial (cheap to context-switch) state.
///
/// # Safety
/// AMX must be available.
unsafe fn release_tiles() {
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}
