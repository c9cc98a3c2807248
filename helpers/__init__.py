"""Corpus to Client: the helpers behind the course-book's notebooks.

One module per chapter concern, read top to bottom:

- ``profiles``: the tiny / colab / full parameter sets (one code path, only parameters differ)
- ``course``: run folders, ``summary.json`` and the chapter runner
- ``dump`` (01): streaming a MediaWiki XML dump into sectioned articles
- ``clean`` (02): the classic NLTK pipeline, and the cleaning used for training text
- ``nltk_offline`` (02): NLTK data without a download (WordNet from Debian, Punkt trained here)
- ``prompt`` (03, 05, 07): the one prompt template the model is trained and served with
- ``pairs`` (03): instruction/response pairs, article-level splits, saving
- ``tokenizer`` (03, 04): the course's own byte-level BPE tokenizer, or a Hub tokenizer online
- ``hub`` (04, 05): where a Hub model comes from: the Hub at a pinned revision, or an offline stand-in
"""
import warnings

# transformers and datasets draw progress bars with tqdm.auto, which in a notebook without ipywidgets
# warns "IProgress not found" and draws text bars. Text bars are what the course wants: they are saved
# in executed notebooks and the book, where widgets would show as "model not found". So the notice goes.
warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"
