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
"""

__version__ = "0.1.0"
