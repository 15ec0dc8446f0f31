"""charlm: the character-level headline model library. Pure: no Prefect, never decides a path.

| module | holds |
| --- | --- |
| `config` | every tunable: ModelConfig, TrainConfig, SampleConfig, IngestConfig; `require` |
| `vocab` | the article's 118-symbol alphabet and the encoding of headlines to ids |
| `model` | `build_model(config)`, stepping the cells, saving/loading to paths it is given |
| `devices` | device facts, `--devices` (one device, MirroredStrategy over GPUs or logical CPUs) |
| `recurrent` | the CPU LSTM and GRU layers: the whole sequence in one fused op each way |
| `kernels` | building and loading those fused ops; which recurrent path training takes (`status`) |
| `loss` | the per-character softmax cross-entropy (a fused op on a CPU) |
| `data` | the encoded corpus (zero-copy tensors), batch plans, batches cut in the compiled step |
| `optim` | Adam with clipping / weight decay / loss scaling, the learning-rate schedule |
| `train` | the training loop; side effects only through `Callback`s, checkpoints via `Checkpoint` |
| `evaluate` | exact bits per character, perplexity, the breakdown by headline length |
| `sample` | batched generation (top-p, temperature, top-k, greedy, prefixes) |
| `quality` | model-free statistics of generated headlines; words a batch has that training lacks |
| `report` | learning-curve, comparison and drift-trend plots, markdown reports |
| `article` | the article's save format: its one reader and the import into Keras |
| `demo_corpus` | the embedded demo corpus (a grammar of ABC-style headlines) |

Turning headline sources into clean rows is the `ingestion` package's job; files and
versions are `storage`'s.
"""
