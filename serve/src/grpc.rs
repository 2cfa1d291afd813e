//! The gRPC face of the Open Inference Protocol: `inference.
//! GRPCInferenceService` on tonic, over the same models and queues as the
//! REST face. Inputs come as `raw_input_contents` (little-endian FP32, what
//! Triton's clients send) or typed `fp32_contents`; outputs go back as
//! `raw_output_contents`, as Triton answers. The API key, deadlines and
//! connection limits are checked before a call gets here
//! (`grpc_transport.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::api_error::ApiError;
use super::classification;
use super::control::Registry;
use super::identity::{EXTENSIONS, PLATFORM, SERVER_NAME};
use super::metrics::Metrics;
use super::model::{check_parameters, scheduling_value, InputTensor, ServedModel, SCHEDULING_PARAMETERS};
use super::proto::grpc_inference_service_server::GrpcInferenceService;
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::model_metadata_response::TensorMetadata;
use super::proto::*;
use super::queue::OutputRows;
use infer::session::Element;

#[derive(Debug, Clone)]
pub struct GrpcService {
    pub models: Arc<Registry>,
    pub metrics: Metrics,
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

impl GrpcService {
    fn model(&self, name: &str, version: &str) -> Result<Arc<ServedModel>, Status> {
        self.models.get(name, version).map_err(|e| e.grpc_status())
    }

    /// Counts and logs one answered call (the client's strings escaped:
    /// a name cannot forge a log line).
    fn record<T>(&self, rpc: &str, (model, version): (&str, &str), start: Instant, result: &Result<T, Status>) {
        let code = match result {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        };
        let [label, served] = self.models.labels(model, version);
        self.metrics.requests.with_label_values(&[&label, &served, "grpc", &format!("{code:?}")]).inc();
        tracing::info!(target: "access", "gRPC {rpc} {} {code:?} {:.3} ms", model.escape_debug(),
            start.elapsed().as_secs_f64() * 1e3);
    }

    /// Runs one of the synchronous calls, counted and logged.
    fn counted<T>(
        &self,
        rpc: &str,
        model: (&str, &str),
        call: impl FnOnce() -> Result<T, Status>,
    ) -> Result<T, Status> {
        let start = Instant::now();
        let result = call();
        self.record(rpc, model, start, &result);
        result
    }

    /// Runs one of the asynchronous calls, counted and logged.
    async fn counted_async<T>(
        &self,
        rpc: &str,
        model: (&str, &str),
        call: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let start = Instant::now();
        let result = call.await;
        self.record(rpc, model, start, &result);
        result
    }

    async fn infer(&self, request: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, Status> {
        let r = request.into_inner();
        let model = self.model(&r.model_name, &r.model_version)?;
        let start = Instant::now();
        // Triton's scheduling ones on the request, `binary_data_size` on an
        // input with raw contents, `classification` on an output.
        check_parameters(r.parameters.keys(), SCHEDULING_PARAMETERS, || "the request".into())
            .map_err(|e| e.grpc_status())?;
        let mut timeout = None;
        for name in SCHEDULING_PARAMETERS {
            if let Some(p) = r.parameters.get(*name) {
                let value = scheduling_value(name, unsigned(p), format!("{:?}", p.parameter_choice))?;
                if *name == "timeout" && value > 0 {
                    timeout = Some(std::time::Duration::from_micros(value));
                }
            }
        }
        let inputs = decode_inputs(&model, r.inputs, r.raw_input_contents).map_err(|e| e.grpc_status())?;
        let requested = requested_outputs(r.outputs).map_err(|e| e.grpc_status())?;
        model.check_outputs(requested.iter().map(|(name, _)| name.as_str())).map_err(|e| e.grpc_status())?;
        let (images, n) = model.validate(inputs).map_err(|e| e.grpc_status())?;
        let rows = model.infer(images, n, timeout).await.map_err(|e| e.grpc_status())?;
        let chosen: Vec<(&OutputRows, Option<usize>)> = if requested.is_empty() {
            rows.iter().map(|r| (r, None)).collect()
        } else {
            requested
                .iter()
                .filter_map(|(name, classes)| rows.iter().find(|r| &r.name == name).map(|r| (r, *classes)))
                .collect()
        };
        let (outputs, raw_output_contents) = chosen
            .into_iter()
            .map(|(o, classes)| match classes {
                None => (
                    InferOutputTensor {
                        name: o.name.clone(),
                        datatype: "FP32".into(),
                        shape: o.shape.clone(),
                        ..Default::default()
                    },
                    o.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ),
                Some(n) => {
                    let c = classification::top(o, n, &model.class_names);
                    let tensor = InferOutputTensor {
                        name: o.name.clone(),
                        datatype: "BYTES".into(),
                        shape: c.shape,
                        ..Default::default()
                    };
                    (tensor, classification::serialize(&c.strings))
                }
            })
            .unzip();
        let response = ModelInferResponse {
            model_name: model.name.clone(),
            model_version: model.version.to_string(),
            id: r.id,
            outputs,
            raw_output_contents,
            ..Default::default()
        };
        model.latency.observe(start.elapsed().as_secs_f64());
        Ok(Response::new(response))
    }
}

/// An integer parameter's value, if it is a whole number ≥ 0.
fn unsigned(p: &InferParameter) -> Option<u64> {
    match p.parameter_choice {
        Some(infer_parameter::ParameterChoice::Int64Param(n)) => u64::try_from(n).ok(),
        Some(infer_parameter::ParameterChoice::Uint64Param(n)) => Some(n),
        _ => None,
    }
}

/// The outputs a request names, each with its `classification` N if any.
fn requested_outputs(
    outputs: Vec<model_infer_request::InferRequestedOutputTensor>,
) -> Result<Vec<(String, Option<usize>)>, ApiError> {
    outputs
        .into_iter()
        .map(|o| {
            check_parameters(o.parameters.keys(), &[classification::PARAMETER], || format!("output {:?}", o.name))?;
            let classes = match o.parameters.get(classification::PARAMETER) {
                None => None,
                Some(p) => {
                    let value = match p.parameter_choice {
                        Some(infer_parameter::ParameterChoice::Int64Param(n)) => Some(n),
                        Some(infer_parameter::ParameterChoice::Uint64Param(n)) => i64::try_from(n).ok(),
                        _ => None,
                    };
                    Some(classification::count(&o.name, value)?)
                }
            };
            Ok((o.name, classes))
        })
        .collect()
}

/// An input's typed contents, in the field of its datatype (the
/// protocol's: `fp32_contents` for FP32, `uint_contents` for UINT8; FP16
/// has none, so it comes as raw contents); any other field set is refused.
fn typed_contents(name: &str, element: Element, mut contents: InferTensorContents) -> Result<Vec<f32>, ApiError> {
    let (field, values) = match element {
        Element::F32 => ("fp32_contents", std::mem::take(&mut contents.fp32_contents)),
        Element::U8 => {
            // Above 255 a value is named by the range check, not wrapped.
            let values = contents.uint_contents.iter().map(|&v| v.min(256) as f32).collect();
            contents.uint_contents.clear();
            ("uint_contents", values)
        }
        Element::F16 => {
            return Err(ApiError::bad(format!(
                "input {name:?} is FP16, which has no typed contents in the protocol; send it in raw_input_contents"
            )))
        }
    };
    if contents != InferTensorContents::default() {
        return Err(ApiError::bad(format!(
            "input {name:?} is {}: its values go in {field}, and the request sets another contents field",
            element.datatype()
        )));
    }
    Ok(values)
}

/// The inputs of a gRPC request: raw bytes when `raw_input_contents` is
/// used (one entry per input, in order), typed contents otherwise.
fn decode_inputs(
    model: &ServedModel,
    inputs: Vec<model_infer_request::InferInputTensor>,
    raw: Vec<Vec<u8>>,
) -> Result<Vec<InputTensor>, ApiError> {
    if !raw.is_empty() && raw.len() != inputs.len() {
        return Err(ApiError::bad(format!(
            "raw_input_contents has {} entries for {} inputs; it needs one per input",
            raw.len(),
            inputs.len()
        )));
    }
    let mut raw = raw.into_iter();
    let mut decoded = Vec::with_capacity(inputs.len());
    for input in inputs {
        check_parameters(input.parameters.keys(), &["binary_data_size"], || format!("input {:?}", input.name))?;
        let count = model.check_declared(&input.name, &input.datatype, &input.shape)?;
        // KServe's SDK names the raw length, as the REST extension does.
        let size = input.parameters.get("binary_data_size").map(|p| {
            unsigned(p)
                .ok_or_else(|| ApiError::bad(format!("input {:?}: binary_data_size is not a byte count", input.name)))
        });
        let size = size.transpose()?;
        let data = match raw.next() {
            Some(bytes) => {
                if let Some(size) = size.filter(|&s| s != bytes.len() as u64) {
                    return Err(ApiError::bad(format!(
                        "input {:?}: binary_data_size is {size} bytes but its raw_input_contents holds {}",
                        input.name,
                        bytes.len()
                    )));
                }
                if input.contents.as_ref().is_some_and(|c| *c != Default::default()) {
                    return Err(ApiError::bad(format!(
                        "input {:?} has both contents and raw_input_contents",
                        input.name
                    )));
                }
                let element = model.input.element;
                if bytes.len() != count * element.size() {
                    return Err(ApiError::bad(format!(
                        "input {:?}: raw_input_contents holds {} bytes but shape {} of {} needs {}",
                        input.name,
                        bytes.len(),
                        super::model::shape_string(&input.shape),
                        element.datatype(),
                        count * element.size()
                    )));
                }
                element.decode(&bytes)
            }
            None if size.is_some() => {
                return Err(ApiError::bad(format!(
                    "input {:?} has binary_data_size but the request has no raw_input_contents",
                    input.name
                )))
            }
            None => typed_contents(&input.name, model.input.element, input.contents.unwrap_or_default())?,
        };
        decoded.push(InputTensor { name: input.name, datatype: input.datatype, shape: input.shape, data });
    }
    Ok(decoded)
}

#[tonic::async_trait]
impl GrpcInferenceService for GrpcService {
    async fn server_live(&self, _: Request<ServerLiveRequest>) -> Result<Response<ServerLiveResponse>, Status> {
        self.counted("ServerLive", ("", ""), || Ok(Response::new(ServerLiveResponse { live: true })))
    }

    async fn server_ready(&self, _: Request<ServerReadyRequest>) -> Result<Response<ServerReadyResponse>, Status> {
        self.counted("ServerReady", ("", ""), || {
            Ok(Response::new(ServerReadyResponse { ready: !self.draining.load(Ordering::Relaxed) }))
        })
    }

    async fn model_ready(&self, request: Request<ModelReadyRequest>) -> Result<Response<ModelReadyResponse>, Status> {
        let r = request.get_ref();
        self.counted("ModelReady", (&r.name, &r.version), || {
            let ready = self.models.get(&r.name, &r.version).is_ok_and(|m| m.queue.serving())
                && !self.draining.load(Ordering::Relaxed);
            Ok(Response::new(ModelReadyResponse { ready }))
        })
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        self.counted("ServerMetadata", ("", ""), || {
            Ok(Response::new(ServerMetadataResponse {
                name: SERVER_NAME.into(),
                version: env!("CARGO_PKG_VERSION").into(),
                extensions: EXTENSIONS.iter().map(|e| e.to_string()).collect(),
            }))
        })
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let r = request.get_ref();
        self.counted("ModelMetadata", (&r.name, &r.version), || {
            let model = self.model(&r.name, &r.version)?;
            // Outputs answer as FP32 whatever the model's (float16 ones widened).
            let tensor = |t: &infer::session::TensorSpec, datatype: &str| TensorMetadata {
                name: t.name.clone(),
                datatype: datatype.into(),
                shape: t.sizes(),
            };
            Ok(Response::new(ModelMetadataResponse {
                name: model.name.clone(),
                versions: self.models.versions(&model.name),
                platform: PLATFORM.into(),
                inputs: vec![tensor(&model.input, model.input.element.datatype())],
                outputs: model.outputs.iter().map(|o| tensor(o, "FP32")).collect(),
            }))
        })
    }

    async fn model_infer(&self, request: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, Status> {
        let (model, version) = (request.get_ref().model_name.clone(), request.get_ref().model_version.clone());
        self.counted_async("ModelInfer", (&model, &version), self.infer(request)).await
    }

    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        let r = request.get_ref();
        self.counted("RepositoryIndex", ("", ""), || {
            Registry::check_repository(&r.repository_name).map_err(|e| e.grpc_status())?;
            let models = self.models.index(r.ready).map_err(|e| e.grpc_status())?;
            let models = models
                .into_iter()
                .map(|e| repository_index_response::ModelIndex {
                    name: e.name,
                    version: e.version,
                    state: e.state,
                    reason: e.reason,
                })
                .collect();
            Ok(Response::new(RepositoryIndexResponse { models }))
        })
    }

    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        let r = request.into_inner();
        self.counted_async("RepositoryModelLoad", (&r.model_name, ""), async {
            Registry::check_repository(&r.repository_name)?;
            check_parameters(r.parameters.keys(), &["config"], || "the load request".into())?;
            let config = match r.parameters.get("config").and_then(|p| p.parameter_choice.as_ref()) {
                None => None,
                Some(model_repository_parameter::ParameterChoice::StringParam(c)) => Some(c.as_str()),
                Some(_) => return Err(ApiError::bad("parameter \"config\" of the load request is not a string").into()),
            };
            self.models.load(&r.model_name, config).await?;
            Ok(Response::new(RepositoryModelLoadResponse {}))
        })
        .await
    }

    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        let r = request.into_inner();
        self.counted_async("RepositoryModelUnload", (&r.model_name, ""), async {
            Registry::check_repository(&r.repository_name)?;
            // No model depends on another here, so unload_dependents has nothing more to unload.
            check_parameters(r.parameters.keys(), &["unload_dependents"], || "the unload request".into())?;
            self.models.unload(&r.model_name).await?;
            Ok(Response::new(RepositoryModelUnloadResponse {}))
        })
        .await
    }

    async fn model_config(
        &self,
        request: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        let r = request.get_ref();
        self.counted("ModelConfig", (&r.name, &r.version), || {
            let model = self.model(&r.name, &r.version)?;
            Ok(Response::new(ModelConfigResponse { config: Some(model.config.clone()) }))
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::grpc::typed_contents;
    use crate::proto::InferTensorContents;
    use infer::session::Element;

    #[test]
    fn typed_contents_are_read_from_the_field_of_the_inputs_datatype() {
        let fp32 = InferTensorContents { fp32_contents: vec![0.5, 1.0], ..Default::default() };
        let uint = InferTensorContents { uint_contents: vec![0, 255, 300], ..Default::default() };
        assert_eq!(typed_contents("x", Element::F32, fp32.clone()).unwrap(), [0.5, 1.0]);
        // 300 stays out of range (256), for the range check to name it.
        assert_eq!(typed_contents("x", Element::U8, uint.clone()).unwrap(), [0.0, 255.0, 256.0]);
        let wrong = |e, c| typed_contents("x", e, c).unwrap_err().to_string();
        assert!(wrong(Element::U8, fp32.clone()).contains("its values go in uint_contents"));
        assert!(wrong(Element::F32, uint).contains("its values go in fp32_contents"));
        assert!(wrong(Element::F16, fp32).contains("send it in raw_input_contents"));
    }
}
