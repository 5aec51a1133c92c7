//! Weight matrices in any supported storage (owned f32, or f32/f16/quantized blocks used in
//! place from a memory-mapped GGUF file) and the matrix-vector product over them.
//!
//! Quantized products use candle's GGML block types and kernels (`GgmlType::vec_dot`, with
//! runtime AVX2 detection) directly on slices: the activation vector is quantized once per
//! product into the kernel's `VecDotType`, then each weight row is one `vec_dot`. No candle
//! tensors are involved, so there is no per-operation overhead for tiny models.

use std::sync::Arc;

use candle_core::quantized::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ5K, BlockQ6K,
    BlockQ8_0, GgmlType as Kernel,
};
use half::f16;
use rayon::prelude::*;

use crate::EngineError;
use crate::gguf::GgmlType;

/// Products with at least this many weights are split over rows with rayon; smaller ones stay
/// on the calling thread, where the fork/join cost would exceed the work.
const PARALLEL_MIN_WEIGHTS: usize = 1 << 16;

/// Bytes of a model file, either memory-mapped or copied into an 8-byte-aligned buffer.
pub(crate) enum Store {
    Mapped(memmap2::Mmap),
    /// Owned copy; `u64` elements guarantee 8-byte alignment of the start.
    Owned(Vec<u64>, usize),
}

impl Store {
    /// Copies `data` into an aligned buffer.
    pub fn copy_of(data: &[u8]) -> Store {
        let mut words = vec![0u64; data.len().div_ceil(8)];
        for (w, chunk) in words.iter_mut().zip(data.chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
        // Words were built from little-endian bytes, so on the little-endian targets we
        // support (GGUF is little-endian too) their in-memory bytes equal `data`.
        Store::Owned(words, data.len())
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Store::Mapped(m) => m,
            Store::Owned(words, len) => {
                let all = words.as_slice();
                // SAFETY: any initialized u64 memory is valid as bytes; `len <= 8 * words.len()`
                // by construction in `copy_of`, and the slice borrows `words`.
                unsafe {
                    std::slice::from_raw_parts(all.as_ptr().cast::<u8>(), (*len).min(all.len() * 8))
                }
            }
        }
    }
}

/// Types whose every bit pattern is a valid value and which contain no padding or pointers,
/// so a byte slice of the right size and alignment can be viewed as a slice of them.
///
/// # Safety
/// Implement only for `#[repr(C)]`/primitive types made of integers, `f16` and `f32`.
unsafe trait Plain: Sized {}
// SAFETY: primitive floats accept every bit pattern.
unsafe impl Plain for f32 {}
// SAFETY: `f16` is `repr(transparent)` over `u16`.
unsafe impl Plain for f16 {}
// SAFETY: candle's blocks are `#[repr(C)]` structs of `f16` and `u8`/`i8` arrays (GGML's
// layout); `type_sizes_match_ggml` in the tests checks their sizes against GGML's.
unsafe impl Plain for BlockQ4_0 {}
// SAFETY: as above.
unsafe impl Plain for BlockQ4_1 {}
// SAFETY: as above.
unsafe impl Plain for BlockQ5_0 {}
// SAFETY: as above.
unsafe impl Plain for BlockQ5_1 {}
// SAFETY: as above.
unsafe impl Plain for BlockQ8_0 {}
// SAFETY: as above.
unsafe impl Plain for BlockQ2K {}
// SAFETY: as above.
unsafe impl Plain for BlockQ3K {}
// SAFETY: as above.
unsafe impl Plain for BlockQ4K {}
// SAFETY: as above.
unsafe impl Plain for BlockQ5K {}
// SAFETY: as above.
unsafe impl Plain for BlockQ6K {}

/// Views `bytes` as `[T]` if its length is a whole number of `T` and it is suitably aligned.
fn cast<T: Plain>(bytes: &[u8]) -> Option<&[T]> {
    let size = std::mem::size_of::<T>();
    if size == 0
        || !bytes.len().is_multiple_of(size)
        || !(bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>())
    {
        return None;
    }
    // SAFETY: length and alignment were checked just above, `T: Plain` accepts any bytes, and
    // the result borrows `bytes`, so it cannot outlive the memory.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) })
}

/// Where a matrix's elements live.
enum Data {
    /// Row-major f32 (llama2.c checkpoints).
    Owned(Vec<f32>),
    /// A byte range of a model file holding row-major GGML data of type `ty`.
    Mapped {
        ty: GgmlType,
        store: Arc<Store>,
        start: usize,
        len: usize,
    },
}

/// A `rows x cols` weight matrix (each row is one output unit).
pub(crate) struct Matrix {
    pub rows: usize,
    pub cols: usize,
    data: Data,
}

impl View<'_> {
    /// Number of blocks (elements for F32/F16); `None` for an invalid view.
    fn len(&self) -> Option<usize> {
        Some(match self {
            View::F32(w) => w.len(),
            View::F16(w) => w.len(),
            View::Q4_0(w) => w.len(),
            View::Q4_1(w) => w.len(),
            View::Q5_0(w) => w.len(),
            View::Q5_1(w) => w.len(),
            View::Q8_0(w) => w.len(),
            View::Q2K(w) => w.len(),
            View::Q3K(w) => w.len(),
            View::Q4K(w) => w.len(),
            View::Q5K(w) => w.len(),
            View::Q6K(w) => w.len(),
            View::Invalid => return None,
        })
    }
}

/// A typed view of a matrix's elements.
enum View<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    Q4_0(&'a [BlockQ4_0]),
    Q4_1(&'a [BlockQ4_1]),
    Q5_0(&'a [BlockQ5_0]),
    Q5_1(&'a [BlockQ5_1]),
    Q8_0(&'a [BlockQ8_0]),
    Q2K(&'a [BlockQ2K]),
    Q3K(&'a [BlockQ3K]),
    Q4K(&'a [BlockQ4K]),
    Q5K(&'a [BlockQ5K]),
    Q6K(&'a [BlockQ6K]),
    /// Only reachable if the file changed size under us; products then yield zeros.
    Invalid,
}

impl Matrix {
    /// An owned f32 matrix; `data.len()` must be `rows * cols`.
    pub fn owned(rows: usize, cols: usize, data: Vec<f32>) -> Matrix {
        debug_assert_eq!(data.len(), rows * cols);
        Matrix {
            rows,
            cols,
            data: Data::Owned(data),
        }
    }

    /// A matrix over `len` bytes at `start` of `store`, checked for size and alignment now so
    /// later views cannot fail.
    pub fn mapped(
        name: &str,
        rows: usize,
        cols: usize,
        ty: GgmlType,
        store: Arc<Store>,
        start: usize,
        len: usize,
    ) -> Result<Matrix, EngineError> {
        let m = Matrix {
            rows,
            cols,
            data: Data::Mapped {
                ty,
                store,
                start,
                len,
            },
        };
        let expected_blocks = rows.checked_mul(cols).map(|n| n / ty.block_size() as usize);
        let ok = cols.is_multiple_of(ty.block_size() as usize)
            && expected_blocks.is_some()
            && m.view().len() == expected_blocks;
        if !ok {
            return Err(EngineError::GgufMalformed(format!(
                "tensor {name}: data size or alignment does not match its {} shape",
                ty.name()
            )));
        }
        Ok(m)
    }

    fn view(&self) -> View<'_> {
        let (ty, bytes) = match &self.data {
            Data::Owned(v) => return View::F32(v),
            Data::Mapped {
                ty,
                store,
                start,
                len,
            } => match start
                .checked_add(*len)
                .and_then(|end| store.bytes().get(*start..end))
            {
                Some(b) => (*ty, b),
                None => return View::Invalid,
            },
        };
        let v = match ty {
            GgmlType::F32 => cast(bytes).map(View::F32),
            GgmlType::F16 => cast(bytes).map(View::F16),
            GgmlType::Q4_0 => cast(bytes).map(View::Q4_0),
            GgmlType::Q4_1 => cast(bytes).map(View::Q4_1),
            GgmlType::Q5_0 => cast(bytes).map(View::Q5_0),
            GgmlType::Q5_1 => cast(bytes).map(View::Q5_1),
            GgmlType::Q8_0 => cast(bytes).map(View::Q8_0),
            GgmlType::Q2K => cast(bytes).map(View::Q2K),
            GgmlType::Q3K => cast(bytes).map(View::Q3K),
            GgmlType::Q4K => cast(bytes).map(View::Q4K),
            GgmlType::Q5K => cast(bytes).map(View::Q5K),
            GgmlType::Q6K => cast(bytes).map(View::Q6K),
        };
        v.unwrap_or(View::Invalid)
    }

    /// Writes row `r` as f32 into `out` (`out.len() == cols`); used for embedding lookups.
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        fn deq<T: Kernel>(blocks: &[T], r: usize, out: &mut [f32]) {
            let per_row = out.len() / T::BLCK_SIZE;
            match blocks.get(r * per_row..(r + 1) * per_row) {
                Some(row) => T::to_float(row, out),
                None => out.fill(0.0),
            }
        }
        match self.view() {
            View::F32(w) => match w.get(r * self.cols..(r + 1) * self.cols) {
                Some(row) => out.copy_from_slice(row),
                None => out.fill(0.0),
            },
            View::F16(w) => deq(w, r, out),
            View::Q4_0(w) => deq(w, r, out),
            View::Q4_1(w) => deq(w, r, out),
            View::Q5_0(w) => deq(w, r, out),
            View::Q5_1(w) => deq(w, r, out),
            View::Q8_0(w) => deq(w, r, out),
            View::Q2K(w) => deq(w, r, out),
            View::Q3K(w) => deq(w, r, out),
            View::Q4K(w) => deq(w, r, out),
            View::Q5K(w) => deq(w, r, out),
            View::Q6K(w) => deq(w, r, out),
            View::Invalid => out.fill(0.0),
        }
    }

    /// `out = W x` with `out.len() == rows` and `x.len() == cols`.
    pub fn matvec(&self, out: &mut [f32], x: &[f32]) {
        debug_assert_eq!(out.len(), self.rows);
        debug_assert_eq!(x.len(), self.cols);
        let parallel = self.rows * self.cols >= PARALLEL_MIN_WEIGHTS;
        match self.view() {
            View::F32(w) => matvec_f32(out, x, w, parallel),
            View::F16(w) => matvec_q(out, x, w, parallel),
            View::Q4_0(w) => matvec_q(out, x, w, parallel),
            View::Q4_1(w) => matvec_q(out, x, w, parallel),
            View::Q5_0(w) => matvec_q(out, x, w, parallel),
            View::Q5_1(w) => matvec_q(out, x, w, parallel),
            View::Q8_0(w) => matvec_q(out, x, w, parallel),
            View::Q2K(w) => matvec_q(out, x, w, parallel),
            View::Q3K(w) => matvec_q(out, x, w, parallel),
            View::Q4K(w) => matvec_q(out, x, w, parallel),
            View::Q5K(w) => matvec_q(out, x, w, parallel),
            View::Q6K(w) => matvec_q(out, x, w, parallel),
            View::Invalid => out.fill(0.0),
        }
    }

    /// Dequantizes the whole matrix (small vectors such as norms and biases).
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        for (r, row) in out.chunks_exact_mut(self.cols).enumerate() {
            self.row_into(r, row);
        }
        out
    }
}

/// Rows per rayon task: large enough to amortise scheduling, small enough to balance 2-64 cores.
const ROWS_PER_TASK: usize = 16;

fn matvec_f32(out: &mut [f32], x: &[f32], w: &[f32], parallel: bool) {
    let cols = x.len();
    if parallel {
        out.par_chunks_mut(ROWS_PER_TASK)
            .zip(w.par_chunks(ROWS_PER_TASK * cols))
            .for_each(|(o, w)| matvec_f32(o, x, w, false));
    } else {
        for (o, row) in out.iter_mut().zip(w.chunks_exact(cols)) {
            *o = dot(row, x);
        }
    }
}

fn matvec_q<T: Kernel>(out: &mut [f32], x: &[f32], w: &[T], parallel: bool) {
    let cols = x.len();
    let mut xq = vec![<T::VecDotType as Kernel>::zeros(); cols / T::VecDotType::BLCK_SIZE];
    T::VecDotType::from_float(x, &mut xq);
    let per_row = cols / T::BLCK_SIZE;
    let rows = |o: &mut [f32], w: &[T]| {
        for (o, row) in o.iter_mut().zip(w.chunks_exact(per_row)) {
            *o = T::vec_dot(cols, row, &xq);
        }
    };
    if parallel {
        out.par_chunks_mut(ROWS_PER_TASK)
            .zip(w.par_chunks(ROWS_PER_TASK * per_row))
            .for_each(|(o, w)| rows(o, w));
    } else {
        rows(out, w);
    }
}

/// Dot product with eight independent accumulators so the compiler can vectorise it. The
/// summation order is fixed, which keeps llama2.c greedy output reproducible.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0.0f32; 8];
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;

    #[test]
    fn type_sizes_match_ggml() {
        fn check<T: Kernel>(ours: GgmlType) {
            assert_eq!(
                std::mem::size_of::<T>() as u64,
                ours.type_size(),
                "{ours:?}"
            );
            assert_eq!(T::BLCK_SIZE as u64, ours.block_size(), "{ours:?}");
            assert_eq!(T::DTYPE.type_size() as u64, ours.type_size());
        }
        check::<f32>(GgmlType::F32);
        check::<f16>(GgmlType::F16);
        check::<BlockQ4_0>(GgmlType::Q4_0);
        check::<BlockQ4_1>(GgmlType::Q4_1);
        check::<BlockQ5_0>(GgmlType::Q5_0);
        check::<BlockQ5_1>(GgmlType::Q5_1);
        check::<BlockQ8_0>(GgmlType::Q8_0);
        check::<BlockQ2K>(GgmlType::Q2K);
        check::<BlockQ3K>(GgmlType::Q3K);
        check::<BlockQ4K>(GgmlType::Q4K);
        check::<BlockQ5K>(GgmlType::Q5K);
        check::<BlockQ6K>(GgmlType::Q6K);
        assert_eq!(GgmlDType::Q6K.block_size(), 256);
    }

    #[test]
    fn cast_checks_length_and_alignment() {
        let store = Store::copy_of(&[0u8; 40]);
        let b = store.bytes();
        assert!(cast::<f32>(&b[..8]).is_some());
        assert!(cast::<f32>(&b[..7]).is_none());
        assert!(cast::<f32>(&b[1..9]).is_none());
        assert_eq!(cast::<BlockQ4_0>(&b[..36]).map(<[_]>::len), Some(2));
    }

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 * 0.25).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }
}
