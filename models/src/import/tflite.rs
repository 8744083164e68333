//! TensorFlow Lite convolutional graphs to ONNX, so that both inference engines
//! (tract and ONNX Runtime) run them. Neither runs the objectron SSD as shipped:
//! tract-tflite has no `DEQUANTIZE` (the weights are stored as fp16) and ONNX Runtime
//! reads no TFLite at all.
//!
//! The converter reads the flatbuffer with tract-tflite's generated schema and writes
//! ONNX protobuf with tract-onnx's. It covers the operators of MobileNet-style SSD
//! graphs (`CONV_2D`, `DEPTHWISE_CONV_2D`, `ADD`, `CONCATENATION`, `RESHAPE`,
//! `LOGISTIC`, `DEQUANTIZE` of constants) and refuses anything else by name. TFLite is
//! NHWC and ONNX convolutions NCHW: the image input stays NHWC (as the original), is
//! transposed once, and four-dimensional activations are turned back to NHWC where a
//! reshape flattens them, so every output keeps the original's element order.

use std::collections::HashMap;

use tract_onnx::pb;
use tract_tflite::tflite;

/// A graph's constant: shape and values.
struct Constant {
    shape: Vec<usize>,
    values: Vec<f32>,
}

#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// A 4-D activation held as NCHW while the original is NHWC.
    Nchw,
    /// Same order as the original.
    Same,
}

/// The label map and the model inside MediaPipe's packed assets: a text label map,
/// one label per line, followed by the TFLite flatbuffer (found by its `TFL3` identifier).
pub fn split_packed_assets(bytes: &[u8]) -> Result<(Vec<String>, &[u8]), String> {
    let start = (0..bytes.len().saturating_sub(8))
        .find(|&p| &bytes[p + 4..p + 8] == b"TFL3")
        .ok_or("no TFLite model (identifier TFL3) inside the packed assets")?;
    let labels = std::str::from_utf8(&bytes[..start])
        .map_err(|_| "the label map before the model is not UTF-8 text")?;
    let labels: Vec<String> = labels.lines().map(str::to_string).collect();
    if labels.is_empty() {
        return Err("no label map before the model".into());
    }
    Ok((labels, &bytes[start..]))
}

fn attr_int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn attr_ints(name: &str, ints: Vec<i64>) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints,
        ..Default::default()
    }
}

fn attr_str(name: &str, s: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::String as i32,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn value_info(name: &str, shape: &[usize]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let dims = shape
        .iter()
        .map(|&d| Dimension {
            value: Some(Value::DimValue(d as i64)),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim: dims }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct Writer {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    fresh: usize,
}

impl Writer {
    fn fresh(&mut self, hint: &str) -> String {
        self.fresh += 1;
        format!("{hint}_{}", self.fresh)
    }

    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        output: &str,
        attribute: Vec<pb::AttributeProto>,
    ) {
        self.nodes.push(pb::NodeProto {
            op_type: op.into(),
            name: format!("{op}_{}", self.nodes.len()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            attribute,
            ..Default::default()
        });
    }

    fn f32_const(&mut self, name: &str, shape: &[usize], values: &[f32]) {
        self.initializers.push(pb::TensorProto {
            name: name.into(),
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: pb::tensor_proto::DataType::Float as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
    }

    fn i64_const(&mut self, name: &str, values: &[i64]) {
        self.initializers.push(pb::TensorProto {
            name: name.into(),
            dims: vec![values.len() as i64],
            data_type: pb::tensor_proto::DataType::Int64 as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
    }

    /// Applies a fused activation to `x`, writing `out`.
    fn activation(
        &mut self,
        kind: tflite::ActivationFunctionType,
        x: &str,
        out: &str,
    ) -> Result<(), String> {
        use tflite::ActivationFunctionType as A;
        match kind {
            A::NONE => self.node("Identity", &[x], out, vec![]),
            A::RELU => self.node("Relu", &[x], out, vec![]),
            A::RELU6 | A::RELU_N1_TO_1 => {
                let (lo, hi) = if kind == A::RELU6 {
                    (0.0, 6.0)
                } else {
                    (-1.0, 1.0)
                };
                let (lo_name, hi_name) = (self.fresh("clip_min"), self.fresh("clip_max"));
                self.f32_const(&lo_name, &[], &[lo]);
                self.f32_const(&hi_name, &[], &[hi]);
                self.node("Clip", &[x, &lo_name, &hi_name], out, vec![]);
            }
            other => return Err(format!("fused activation {other:?} is not supported")),
        }
        Ok(())
    }
}

/// A flatbuffer vector of i32 (shape, operator inputs) as a Vec; absent is empty.
macro_rules! ints {
    ($v:expr) => {
        $v.map(|v| v.iter().collect::<Vec<i32>>())
            .unwrap_or_default()
    };
}

/// Converts a float TFLite graph (weights fp32 or fp16 behind `DEQUANTIZE`) to an ONNX
/// model (opset 13). Returns the encoded model; errors name what is not supported.
pub fn tflite_to_onnx(bytes: &[u8]) -> Result<Vec<u8>, String> {
    convert(bytes).map_err(|e| format!("TFLite to ONNX: {e}"))
}

fn convert(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use prost::Message;
    use tflite::BuiltinOperator as Op;

    let model =
        tflite::root_as_model(bytes).map_err(|e| format!("not a TFLite flatbuffer: {e}"))?;
    let codes: Vec<Op> = model
        .operator_codes()
        .ok_or("no operator codes")?
        .iter()
        .map(|c| Op((c.deprecated_builtin_code() as i32).max(c.builtin_code().0)))
        .collect();
    let buffers = model.buffers().ok_or("no buffers")?;
    let subgraphs = model.subgraphs().ok_or("no subgraph")?;
    if subgraphs.len() != 1 {
        return Err(format!("{} subgraphs; one is supported", subgraphs.len()));
    }
    let graph = subgraphs.get(0);
    let tensors = graph.tensors().ok_or("no tensors")?;
    let shape_of = |t: usize| -> Vec<usize> {
        ints!(tensors.get(t).shape())
            .iter()
            .map(|&d| d.max(0) as usize)
            .collect()
    };
    let name_of = |t: usize| format!("t{t}");

    // Constants straight from buffers (fp32 or fp16).
    let stored = |t: usize| -> Result<Option<Constant>, String> {
        let tensor = tensors.get(t);
        let Some(data) = buffers.get(tensor.buffer() as usize).data() else {
            return Ok(None);
        };
        if data.is_empty() {
            return Ok(None);
        }
        let data = data.bytes();
        let values: Vec<f32> = match tensor.type_() {
            tflite::TensorType::FLOAT32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            tflite::TensorType::FLOAT16 => data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            tflite::TensorType::INT32 => data
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
                .collect(),
            other => {
                return Err(format!(
                    "constant tensor {:?} of type {other:?}",
                    tensor.name()
                ));
            }
        };
        let shape = shape_of(t);
        if shape.iter().product::<usize>() != values.len() {
            return Err(format!(
                "constant tensor {:?}: {} values for shape {shape:?}",
                tensor.name(),
                values.len()
            ));
        }
        Ok(Some(Constant { shape, values }))
    };

    let mut w = Writer {
        nodes: vec![],
        initializers: vec![],
        fresh: 0,
    };
    let mut consts: HashMap<usize, Constant> = HashMap::new();
    let mut layout: HashMap<usize, Layout> = HashMap::new();

    let inputs = ints!(graph.inputs());
    let [input] = inputs[..] else {
        return Err(format!(
            "{} graph inputs; one image input is supported",
            inputs.len()
        ));
    };
    let input = input as usize;
    let input_shape = shape_of(input);
    if input_shape.len() != 4 {
        return Err(format!("input shape {input_shape:?} is not NHWC"));
    }
    let input_name = tensors.get(input).name().unwrap_or("input").to_string();
    w.node(
        "Transpose",
        &[&input_name],
        &name_of(input),
        vec![attr_ints("perm", vec![0, 3, 1, 2])],
    );
    layout.insert(input, Layout::Nchw);

    let ops = graph.operators().ok_or("no operators")?;
    for op in ops.iter() {
        let code = *codes
            .get(op.opcode_index() as usize)
            .ok_or("operator code out of range")?;
        let ins: Vec<usize> = ints!(op.inputs()).iter().map(|&i| i as usize).collect();
        let outs: Vec<usize> = ints!(op.outputs()).iter().map(|&i| i as usize).collect();
        let [out] = outs[..] else {
            return Err(format!("{code:?} with {} outputs", outs.len()));
        };
        let input_at = |k: usize| -> Result<usize, String> {
            ins.get(k)
                .copied()
                .ok_or_else(|| format!("{code:?} lacks input {k}"))
        };
        let constant =
            |t: usize, consts: &mut HashMap<usize, Constant>| -> Result<Constant, String> {
                if let Some(c) = consts.remove(&t) {
                    return Ok(c);
                }
                stored(t)?.ok_or_else(|| {
                    format!(
                        "{code:?} needs a constant input, tensor {:?} is computed",
                        tensors.get(t).name()
                    )
                })
            };
        match code {
            Op::DEQUANTIZE => {
                let c = constant(input_at(0)?, &mut consts)?;
                consts.insert(out, c);
            }
            Op::CONV_2D | Op::DEPTHWISE_CONV_2D => {
                let x = input_at(0)?;
                if layout.get(&x) != Some(&Layout::Nchw) {
                    return Err(format!(
                        "{code:?} on a tensor that is not an image activation"
                    ));
                }
                let filter = constant(input_at(1)?, &mut consts)?;
                let bias = match ins.get(2) {
                    Some(&b) if b < tensors.len() => Some(constant(b, &mut consts)?),
                    _ => None,
                };
                let [a, kh, kw, b] = filter.shape[..] else {
                    return Err(format!("{code:?} filter of shape {:?}", filter.shape));
                };
                let in_channels = shape_of(x).get(3).copied().unwrap_or(0);
                // ONNX weights [O, I/group, KH, KW].
                let (o, i_per_group, group) = if code == Op::CONV_2D {
                    (a, b, 1)
                } else {
                    (b, 1, in_channels)
                };
                let mut weights = vec![0f32; filter.values.len()];
                for oc in 0..o {
                    for ic in 0..i_per_group {
                        for y in 0..kh {
                            for xx in 0..kw {
                                let src = if code == Op::CONV_2D {
                                    ((oc * kh + y) * kw + xx) * b + ic
                                } else {
                                    (y * kw + xx) * b + oc
                                };
                                weights[((oc * i_per_group + ic) * kh + y) * kw + xx] =
                                    filter.values[src];
                            }
                        }
                    }
                }
                let (padding, sh, sw, dh, dw, act) = if code == Op::CONV_2D {
                    let o = op
                        .builtin_options_as_conv_2_doptions()
                        .ok_or("CONV_2D without options")?;
                    (
                        o.padding(),
                        o.stride_h(),
                        o.stride_w(),
                        o.dilation_h_factor(),
                        o.dilation_w_factor(),
                        o.fused_activation_function(),
                    )
                } else {
                    let o = op
                        .builtin_options_as_depthwise_conv_2_doptions()
                        .ok_or("DEPTHWISE_CONV_2D without options")?;
                    if o.depth_multiplier() > 1 {
                        return Err("depthwise convolution with a depth multiplier".into());
                    }
                    (
                        o.padding(),
                        o.stride_h(),
                        o.stride_w(),
                        o.dilation_h_factor(),
                        o.dilation_w_factor(),
                        o.fused_activation_function(),
                    )
                };
                let w_name = w.fresh("weight");
                w.f32_const(&w_name, &[o, i_per_group, kh, kw], &weights);
                let mut conv_inputs = vec![name_of(x), w_name];
                if let Some(bias) = bias {
                    let b_name = w.fresh("bias");
                    w.f32_const(&b_name, &[bias.values.len()], &bias.values);
                    conv_inputs.push(b_name);
                }
                let pad = match padding {
                    tflite::Padding::SAME => "SAME_UPPER",
                    tflite::Padding::VALID => "VALID",
                    other => return Err(format!("padding {other:?}")),
                };
                let attrs = vec![
                    attr_ints("strides", vec![sh as i64, sw as i64]),
                    attr_ints("dilations", vec![dh.max(1) as i64, dw.max(1) as i64]),
                    attr_ints("kernel_shape", vec![kh as i64, kw as i64]),
                    attr_int("group", group as i64),
                    attr_str("auto_pad", pad),
                ];
                let pre = w.fresh("conv");
                let refs: Vec<&str> = conv_inputs.iter().map(String::as_str).collect();
                w.node("Conv", &refs, &pre, attrs);
                w.activation(act, &pre, &name_of(out))?;
                layout.insert(out, Layout::Nchw);
            }
            Op::ADD => {
                let (a, b) = (input_at(0)?, input_at(1)?);
                if layout.get(&a) != layout.get(&b) || !layout.contains_key(&a) {
                    return Err("ADD of a constant or of tensors in different layouts".into());
                }
                let act = op
                    .builtin_options_as_add_options()
                    .map(|o| o.fused_activation_function())
                    .unwrap_or(tflite::ActivationFunctionType::NONE);
                let pre = w.fresh("add");
                w.node("Add", &[&name_of(a), &name_of(b)], &pre, vec![]);
                w.activation(act, &pre, &name_of(out))?;
                layout.insert(out, layout[&a]);
            }
            Op::RESHAPE => {
                let x = input_at(0)?;
                let mut source = name_of(x);
                match layout.get(&x) {
                    Some(Layout::Nchw) => {
                        let back = w.fresh("nhwc");
                        w.node(
                            "Transpose",
                            &[&source],
                            &back,
                            vec![attr_ints("perm", vec![0, 2, 3, 1])],
                        );
                        source = back;
                    }
                    Some(Layout::Same) => {}
                    None => return Err("RESHAPE of a constant".into()),
                }
                let target: Vec<i64> = shape_of(out).iter().map(|&d| d as i64).collect();
                let s_name = w.fresh("shape");
                w.i64_const(&s_name, &target);
                w.node("Reshape", &[&source, &s_name], &name_of(out), vec![]);
                layout.insert(out, Layout::Same);
            }
            Op::CONCATENATION => {
                let opts = op
                    .builtin_options_as_concatenation_options()
                    .ok_or("CONCATENATION without options")?;
                let first = layout
                    .get(&input_at(0)?)
                    .copied()
                    .ok_or("CONCATENATION of a constant")?;
                if ins.iter().any(|t| layout.get(t) != Some(&first)) {
                    return Err("CONCATENATION of tensors in different layouts".into());
                }
                let rank = shape_of(out).len() as i32;
                let mut axis = opts.axis();
                if axis < 0 {
                    axis += rank;
                }
                if first == Layout::Nchw {
                    axis = [0, 2, 3, 1][axis.clamp(0, 3) as usize];
                }
                let names: Vec<String> = ins.iter().map(|&t| name_of(t)).collect();
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let pre = w.fresh("concat");
                w.node("Concat", &refs, &pre, vec![attr_int("axis", axis as i64)]);
                w.activation(opts.fused_activation_function(), &pre, &name_of(out))?;
                layout.insert(out, first);
            }
            Op::LOGISTIC => {
                let x = input_at(0)?;
                w.node("Sigmoid", &[&name_of(x)], &name_of(out), vec![]);
                layout.insert(out, *layout.get(&x).ok_or("LOGISTIC of a constant")?);
            }
            other => {
                return Err(format!(
                    "operator {other:?} is not supported by the converter"
                ));
            }
        }
    }

    let mut outputs = vec![];
    for t in ints!(graph.outputs()) {
        let t = t as usize;
        let name = tensors.get(t).name().unwrap_or("output").to_string();
        let shape = shape_of(t);
        match layout.get(&t) {
            Some(Layout::Nchw) => w.node(
                "Transpose",
                &[&name_of(t)],
                &name,
                vec![attr_ints("perm", vec![0, 2, 3, 1])],
            ),
            Some(Layout::Same) => w.node("Identity", &[&name_of(t)], &name, vec![]),
            None => return Err(format!("output {name} is a constant")),
        }
        outputs.push(value_info(&name, &shape));
    }

    let onnx = pb::ModelProto {
        ir_version: 8,
        producer_name: "aisle-models tflite importer".into(),
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(pb::GraphProto {
            name: "converted".into(),
            node: w.nodes,
            initializer: w.initializers,
            input: vec![value_info(&input_name, &input_shape)],
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(onnx.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_it_cannot_convert() {
        assert!(split_packed_assets(b"Bottle\nBox\n").is_err());
        let (labels, model) = split_packed_assets(b"???\nBottle\n\0\0\0\0TFL3rest").expect("split");
        assert_eq!(labels, ["???", "Bottle"]);
        assert_eq!(&model[4..8], b"TFL3");
        let err = tflite_to_onnx(model).expect_err("a truncated flatbuffer");
        assert!(err.contains("TFLite"), "{err}");
        assert!(tflite_to_onnx(b"").is_err());
    }
}
