"""The offline speech lab: everything needed to hear and measure VALL-E without the Hub.

- `valle.lab.espeak`:    speech synthesis through the espeak-ng C library in `espeakng-loader`
- `valle.lab.sentences`: a seeded English sentence grammar (the corpus text, written here)
- `valle.lab.corpus`:    the multi-speaker corpus as a 🤗 `datasets.DatasetDict`
- `valle.lab.codec`:     training a small transformers `EncodecModel` (24 kHz, 8 x 1024 codes)
- `valle.lab.judges`:    speaker similarity (resemblyzer) and intelligibility (a CTC recogniser)
- `valle.lab.report`:    the codec round-trip measurements (JSON + wav files)

Heavy imports (torch, datasets, transformers) happen inside functions, so importing the
package is cheap.
"""
