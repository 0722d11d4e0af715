"""Turn Keras and TF1 models into TensorFlow Serving SavedModel versions, verified."""
