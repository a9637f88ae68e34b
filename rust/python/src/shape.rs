//! `zdfuzz.Shape`: the machine shape as one value.
//!
//! Machine, Program, Program.from_bytes, NativeFuzzer and explore all take
//! `shape=`: a `Shape`, or a mapping of the same fields (`{"types":
//! ["generic"], "pages": 1}`). System RAM and huge pages default to what the
//! core gives the device types (some only with MEMORY_DEVICE_PRIVATE).

use crate::error::{config, Result};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyMapping};
use zdfuzz_core::{DeviceType, Shape};

/// How many of everything: device types, pgmaps per type, pages per pgmap,
/// CPUs, processes, address slots, files and pages per file, task slots,
/// system RAM pages and the huge-page order.
#[pyclass(module = "zdfuzz._core", name = "Shape", frozen, eq, skip_from_py_object)]
#[derive(Clone, PartialEq)]
pub struct PyShape {
    pub inner: Shape,
}

#[pymethods]
impl PyShape {
    #[new]
    #[pyo3(signature = (types = None, pgmaps = 1, pages = 4, cpus = 2, procs = 2, addrs = 4, files = 2,
                        file_pages = 2, tasks = 4, ram = None, order = None, faults = 0, devdax_pmd = 0,
                        fsdax_pmd = 0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        types: Option<Vec<String>>,
        pgmaps: usize,
        pages: usize,
        cpus: usize,
        procs: usize,
        addrs: usize,
        files: usize,
        file_pages: usize,
        tasks: usize,
        ram: Option<usize>,
        order: Option<usize>,
        faults: usize,
        devdax_pmd: usize,
        fsdax_pmd: usize,
    ) -> Result<PyShape> {
        let fields = [
            ("pgmaps", pgmaps),
            ("pages", pages),
            ("cpus", cpus),
            ("procs", procs),
            ("addrs", addrs),
            ("files", files),
            ("file_pages", file_pages),
            ("tasks", tasks),
            ("faults", faults),
            ("devdax_pmd", devdax_pmd),
            ("fsdax_pmd", fsdax_pmd),
        ];
        Ok(PyShape { inner: Shape::build(types.as_deref(), &fields, ram, order)? })
    }

    #[getter]
    fn types(&self) -> Vec<&'static str> {
        self.inner.types.iter().map(|t| t.name()).collect()
    }

    #[getter]
    fn pgmaps(&self) -> usize {
        self.inner.pgmaps
    }
    #[getter]
    fn pages(&self) -> usize {
        self.inner.pages
    }
    #[getter]
    fn cpus(&self) -> usize {
        self.inner.cpus
    }
    #[getter]
    fn procs(&self) -> usize {
        self.inner.procs
    }
    #[getter]
    fn addrs(&self) -> usize {
        self.inner.addrs
    }
    #[getter]
    fn files(&self) -> usize {
        self.inner.files
    }
    #[getter]
    fn file_pages(&self) -> usize {
        self.inner.file_pages
    }
    #[getter]
    fn tasks(&self) -> usize {
        self.inner.tasks
    }
    #[getter]
    fn ram(&self) -> usize {
        self.inner.ram
    }
    #[getter]
    fn order(&self) -> usize {
        self.inner.order
    }
    /// 1: `fail_next` may make kernel calls fail (failure injection).
    #[getter]
    fn faults(&self) -> usize {
        self.inner.faults
    }
    /// 1: device-dax devices are PMD-aligned (faults map PMDs; compound
    /// folios from v5.17).
    #[getter]
    fn devdax_pmd(&self) -> usize {
        self.inner.devdax_pmd
    }
    /// 1: FS-DAX entries are PMD-sized (faults map PMDs; compound folios
    /// from v6.15).
    #[getter]
    fn fsdax_pmd(&self) -> usize {
        self.inner.fsdax_pmd
    }

    /// Every field: {"types": [...], "pgmaps": 1, ...} (what `Shape(**d)` takes).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("types", self.types())?;
        for (k, v) in self.inner.header_fields() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    fn __repr__(&self) -> String {
        let fields: Vec<String> = self.inner.header_fields().iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("Shape(types={:?}, {})", self.types(), fields.join(", "))
    }
}

/// `shape=`: a Shape, a mapping of its fields, or None (the default shape).
pub fn shape_arg(obj: Option<&Bound<'_, PyAny>>) -> Result<Shape> {
    let Some(obj) = obj else { return Ok(Shape::default()) };
    if let Ok(s) = obj.cast::<PyShape>() {
        return Ok(s.get().inner.clone());
    }
    let map = obj.cast::<PyMapping>().map_err(|_| config("shape must be a zdfuzz.Shape or a mapping of its fields"))?;
    let mut types: Option<Vec<String>> = None;
    let (mut ram, mut order) = (None, None);
    let mut fields: Vec<(String, usize)> = Vec::new();
    let items = map.items().map_err(|_| config("shape: cannot read the mapping"))?;
    for item in items.iter() {
        let (k, v): (String, Bound<'_, PyAny>) = item.extract().map_err(|_| config("shape: keys are field names"))?;
        if k == "types" {
            let t: Vec<String> = v.extract().map_err(|_| config("shape: types is a list of type names"))?;
            types = Some(t);
            continue;
        }
        let n: usize = v.extract().map_err(|_| config(format!("shape: {k} must be a non-negative integer")))?;
        match k.as_str() {
            "ram" => ram = Some(n),
            "order" => order = Some(n),
            _ => fields.push((k, n)),
        }
    }
    let fields: Vec<(&str, usize)> = fields.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    Ok(Shape::build(types.as_deref(), &fields, ram, order)?)
}

/// The device type names, in the core's order.
pub fn device_types() -> Vec<&'static str> {
    DeviceType::names().to_vec()
}

/// The types of a shape that names none (MEMORY_DEVICE_COHERENT is asked
/// for by name).
pub fn default_device_types() -> Vec<&'static str> {
    DeviceType::DEFAULT.map(DeviceType::name).to_vec()
}
