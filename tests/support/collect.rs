//! A [`Sink`] that records what the stream delivers, for comparing two streams or a stream with
//! the values a fixture wrote.

use weightreel::selection::Selection;
use weightreel::source::{Model, TensorInfo};
use weightreel::stream::{self, Sink, StreamOptions, StreamSummary};
use weightreel::Result;

/// Values delivered for one tensor: `(element index, value)` in delivery order.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    /// Tensor name.
    pub name: String,
    /// What `begin_tensor` announced.
    pub selected: u64,
    /// Element index and value.
    pub values: Vec<(u64, f32)>,
}

/// Records every call; `keep: false` only counts (for streaming a whole model).
#[derive(Debug, Default)]
pub struct Collect {
    /// Keep the values.
    pub keep: bool,
    /// Per tensor, in stream order.
    pub tensors: Vec<Delivered>,
    /// Values delivered.
    pub count: u64,
    /// Largest slice passed to one `values` call.
    pub max_slice: usize,
    /// `values` calls.
    pub calls: u64,
}

impl Sink for Collect {
    fn begin_tensor(&mut self, tensor: &TensorInfo, selected: u64) -> Result<bool> {
        self.tensors.push(Delivered {
            name: tensor.name.clone(),
            selected,
            values: Vec::new(),
        });
        Ok(true)
    }

    fn values(&mut self, tensor: &TensorInfo, start: u64, values: &[f32]) -> Result<bool> {
        let last = self.tensors.last_mut().expect("begin_tensor came first");
        assert_eq!(
            last.name, tensor.name,
            "values for a tensor that was not begun"
        );
        self.count += values.len() as u64;
        self.calls += 1;
        self.max_slice = self.max_slice.max(values.len());
        if self.keep {
            last.values.extend(
                values
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| (start + i as u64, v)),
            );
        }
        Ok(true)
    }
}

/// Plan `selection` on `model` and stream it into a keeping [`Collect`].
pub fn stream_values(model: &Model, selection: &Selection) -> (Collect, StreamSummary) {
    let plan = selection.plan(model);
    let mut sink = Collect {
        keep: true,
        ..Default::default()
    };
    let summary =
        stream::stream(model, &plan, &mut sink, StreamOptions::default()).expect("stream succeeds");
    (sink, summary)
}
