"""FaceLab: face data, GRU classifiers and autoencoder embeddings for face recognition.

The library behind the Streamlit dashboard and the `python -m facelab` command line. It imports no
Streamlit (the pages' shared widgets live in `pages/ui/`) and loads TensorFlow/Keras
only in the modules that build or run models, so data and preprocessing stay quick to import.
"""

__version__ = "0.1.0"

FACE_SIZE = 64  # default model input: 64x64 grey faces in [0, 1]
OLIVETTI_CREDIT = "Face images: The Database of Faces, AT&T Laboratories Cambridge"
