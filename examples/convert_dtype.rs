//! Writes a copy of a safetensors file with its F32 tensors converted to F16 or BF16 (other
//! dtypes copied as they are), for the benchmark's F16/BF16 rows and lossless comparisons.
//!
//! ```text
//! cargo run --release --example convert_dtype -- IN.safetensors OUT.safetensors f16|bf16
//! ```

use std::collections::HashMap;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, dtype] = args.as_slice() else {
        eprintln!("usage: convert_dtype IN.safetensors OUT.safetensors f16|bf16");
        std::process::exit(2)
    };
    let to = match dtype.as_str() {
        "f16" => Dtype::F16,
        "bf16" => Dtype::BF16,
        other => {
            eprintln!("error: invalid dtype '{other}' (expected f16 or bf16)");
            std::process::exit(2)
        }
    };
    let bytes = std::fs::read(input).unwrap_or_else(|e| {
        eprintln!("error: {input}: {e}");
        std::process::exit(1)
    });
    let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| {
        eprintln!("error: {input}: {e}");
        std::process::exit(1)
    });
    let mut converted: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let data = if view.dtype() == Dtype::F32 {
            view.data()
                .chunks_exact(4)
                .flat_map(|c| {
                    let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    match to {
                        Dtype::F16 => half::f16::from_f32(v).to_le_bytes(),
                        _ => half::bf16::from_f32(v).to_le_bytes(),
                    }
                })
                .collect()
        } else {
            view.data().to_vec()
        };
        let dt = if view.dtype() == Dtype::F32 {
            to
        } else {
            view.dtype()
        };
        converted.push((name, dt, view.shape().to_vec(), data));
    }
    let views: HashMap<String, TensorView<'_>> = converted
        .iter()
        .map(|(name, dt, shape, data)| {
            (
                name.clone(),
                TensorView::new(*dt, shape.clone(), data).expect("valid view"),
            )
        })
        .collect();
    safetensors::serialize_to_file(&views, None, std::path::Path::new(output)).unwrap_or_else(
        |e| {
            eprintln!("error: {output}: {e}");
            std::process::exit(1)
        },
    );
}
