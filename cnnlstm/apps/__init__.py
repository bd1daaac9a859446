"""Programs built on the library: the end-to-end demo, the model comparison, the HTML report, feature
extraction for other tools (`cnnlstm extract`)."""
