"""The dev server's gRPC API: PredictionService.Predict and GetModelMetadata, and
ModelService.GetModelStatus, over a `ServingApp`, through the servicer classes generated in
tensorflow_serving.apis."""

from __future__ import annotations

import logging

from keras_forensics.serving.app import ServingApp
from keras_forensics.serving.protocol import ServingError, invalid

logger = logging.getLogger(__name__)


def servicers(app: ServingApp):
    """PredictionService and ModelService servicers over `app` (tensorflow_serving.apis classes)."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import (model_service_pb2_grpc, predict_pb2,
                                         prediction_service_pb2_grpc)

    def answer(context, function, *args):
        try:
            return function(*args)
        except ServingError as error:
            context.abort(getattr(grpc.StatusCode, error.code), error.message)
        except Exception as error:  # noqa: BLE001 -- never let a request take the server down
            logger.exception("gRPC request failed")
            context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")

    def spec_of(model_spec):
        version = model_spec.version.value if model_spec.HasField("version") else None
        return model_spec.name, version, model_spec.version_label or None

    def predict(request, context):
        name, version, label = spec_of(request.model_spec)
        inputs = {}
        for key, proto in request.inputs.items():
            try:
                inputs[key] = tf.make_ndarray(proto)
            except (ValueError, TypeError) as error:
                raise invalid(f"input '{key}': malformed TensorProto ({error})") from None
        servable, signature = app.lookup(name, version, label, request.model_spec.signature_name)
        outputs = app.run(signature, inputs, timeout=context.time_remaining())
        wanted = list(request.output_filter) or list(outputs)
        unknown = sorted(set(wanted) - set(outputs))
        if unknown:
            raise invalid(f"output tensor alias not found in signature: {', '.join(unknown)}")
        response = predict_pb2.PredictResponse()
        response.model_spec.name = name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature.name
        for key in wanted:
            response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
        return response

    class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        """Predict and GetModelMetadata; Classify, Regress and MultiInference stay UNIMPLEMENTED."""

        def Predict(self, request, context):  # noqa: N802 -- gRPC method names
            return answer(context, predict, request, context)

        def GetModelMetadata(self, request, context):  # noqa: N802
            name, version, label = spec_of(request.model_spec)
            return answer(context, app.metadata_proto, name, version, label, list(request.metadata_field))

    class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
        """GetModelStatus; HandleReloadConfigRequest stays UNIMPLEMENTED."""

        def GetModelStatus(self, request, context):  # noqa: N802
            name, version, label = spec_of(request.model_spec)
            return answer(context, app.status_proto, name, version, label)

    return PredictionServicer(), ModelServicer()
