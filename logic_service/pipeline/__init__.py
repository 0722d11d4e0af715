"""What a pipeline is, from the files it names to the features of one request.

- `pickle_scan.py`: what a pickle, joblib, dill or .skops file holds, read without running it.
- `artifacts.py`: load pickles, joblib, dill and .skops files strictly, with their pins and versions.
- `contract.py`: the request contract read from the fitted state (columns, categories, nulls).
- `validation.py`: the checks a request passes, in one pass, into the prepared request.
- `assembled.py`: `assemble:`, separately fitted transformers side by side as one.
- `compiled.py`, `onnx_converters.py`: transformers and models as ONNX run by onnxruntime.
- `parity.py`: the gate a compiled pipeline passes before it serves.
- `bundle.py`: a compiled build on disk (graphs, contract, report), written atomically, verified.
- `runtime.py`: `Pipeline`, the loaded pipeline a request runs through.
- `self_test.py`: scores a pipeline's own contract rows before it reports ready.
- `loader.py`: builds the pipelines at start-up: from a compiled build, or from the artifacts
  (version check, load, contract, compile, parity, engine), then the self-test.
"""
