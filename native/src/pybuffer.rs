//! Python buffer-protocol objects (bytes, bytearray, memoryview, numpy arrays, pyarrow
//! buffers, mmap) seen as byte slices without copying.

use std::mem::MaybeUninit;

use pyo3::ffi;
use pyo3::prelude::*;

/// A contiguous buffer exported by a Python object, released on drop.
///
/// Not `Send`: keep it on the calling thread and hand only the slice to `py.detach`.
pub struct ByteView {
    view: Box<ffi::Py_buffer>,
}

impl ByteView {
    /// Any contiguous buffer, as unsigned bytes whatever its item type.
    pub fn readable(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        Self::get(obj, ffi::PyBUF_SIMPLE)
    }

    /// A contiguous buffer the caller may write into (bytearray, mmap, numpy, ...).
    pub fn writable(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        Self::get(obj, ffi::PyBUF_WRITABLE)
    }

    fn get(obj: &Bound<'_, PyAny>, flags: std::os::raw::c_int) -> PyResult<Self> {
        let mut view = Box::new(MaybeUninit::<ffi::Py_buffer>::uninit());
        // SAFETY: `view` is valid storage for a Py_buffer; the exporter fills it in on success
        // (and raises on failure, e.g. a non-contiguous or read-only buffer).
        let rc = unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), flags) };
        if rc == -1 {
            return Err(PyErr::fetch(obj.py()));
        }
        // SAFETY: initialised by the successful call above.
        Ok(ByteView {
            view: unsafe { view.assume_init() },
        })
    }

    pub fn as_slice(&self) -> &[u8] {
        if self.view.len <= 0 || self.view.buf.is_null() {
            return &[];
        }
        // SAFETY: a simple (contiguous) buffer of `len` bytes, kept alive until `self` drops.
        unsafe { std::slice::from_raw_parts(self.view.buf as *const u8, self.view.len as usize) }
    }

    /// Only meaningful for views created with `writable`.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        if self.view.len <= 0 || self.view.buf.is_null() || self.view.readonly != 0 {
            return &mut [];
        }
        // SAFETY: as above, and the exporter granted write access (PyBUF_WRITABLE).
        unsafe { std::slice::from_raw_parts_mut(self.view.buf as *mut u8, self.view.len as usize) }
    }
}

impl Drop for ByteView {
    fn drop(&mut self) {
        // SAFETY: the view was filled by PyObject_GetBuffer and is released exactly once,
        // with the GIL held.
        Python::attach(|_| unsafe { ffi::PyBuffer_Release(&mut *self.view) });
    }
}
