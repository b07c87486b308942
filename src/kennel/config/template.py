"""The commented ``kennel.yaml`` that ``kennel init`` writes."""

from __future__ import annotations


def default_config_text() -> str:
    """The commented kennel.yaml that ``kennel init`` writes."""
    return """\
# kennel project configuration. Relative paths are resolved against this file's folder.
project: kennel

store:
  # Metadata database: SQLite by default, or e.g. postgresql+psycopg://127.0.0.1:5432/test
  metadata_url: sqlite:///.kennel/kennel.db
  # Artifact store: a local folder or any fsspec URL (s3://bucket/prefix, memory://x, ...);
  # s3+http(s)://host:port/bucket/prefix for an S3-compatible server (credentials: AWS_* env)
  artifacts_url: .kennel/artifacts

data:
  labels: [cat, dog]        # images with any other label are quarantined
  split:
    test: 0.2               # stratified, hash-based, stable across appends
    validation: 0.0
    seed: 0
  min_side: 32              # smaller images are quarantined as too small
  max_pixels: 40000000      # larger declared sizes are quarantined as decompression bombs
  max_file_bytes: 67108864
  near_duplicate_distance: 4  # hash bits; pairs this close (the same hash too) are reported; 0: off
  workers: 0                # 0 = one process per CPU core
  allowed_roots: []         # manifest/SQL rows may point here too (folders, URL prefixes)

train:
  # A preset sets the keys below that this section leaves out: quick (these defaults: a small
  # CNN, seconds) or best (EfficientNet-Lite2 at 320 px, its ImageNet features frozen and
  # computed once, a linear classifier fitted to them (lr, epochs and the like do not apply),
  # each image averaged with its mirror image; its accuracy
  # on the real photos: see README). Keys written here win over the preset's.
  preset: quick
  # arch: small_cnn         # or efficientnet_lite0 / _lite1 / _lite2 (ImageNet weights)
  pretrained: true
  # image_size: 96          # a multiple of 32
  # epochs: 6
  # batch_size: 64
  # lr: 0.003
  # weight_decay: 0.0001
  # label_smoothing: 0.1
  # augment: 0.5            # 0 = none, 1 = strongest
  # dropout: 0.2
  # frozen_blocks: 0        # efficientnet_lite*: freeze the stem + N blocks and cache them
  #                         # (one more than the blocks: the head convolution too)
  # freeze_backbone: false  # efficientnet_lite*: fit only the classifier (a linear probe)
  # tta_flip: false         # average each image with its mirror image (in the ONNX graph)
  frame: tiles              # wide camera frames: centre, letterbox, tiles, letterbox+tiles
  schedule: onecycle        # or cosine
  # patience: 3             # early stopping on the validation split
  seed: 0
  balance_by: null          # a manifest column (label, camera...): equal shares per epoch
  validation_share: 0.1     # carved from train when the dataset has no validation split
  threads: 0                # 0 = all cores (kennel train --nproc N: cores / N each)
  device: auto              # auto = CUDA when present, else cpu; or cpu, cuda, cuda:N
  search:
    method: tpe             # grid | random | tpe
    trials: 4               # 1 = no search
    budget_minutes: null
    trial_epochs: null      # epochs per trial (default: train.epochs)
    storage: null           # Optuna RDB URL (shared studies default to the metadata DB)
    heartbeat_s: 30         # kennel tune worker: a running trial's heartbeat
    grace_s: null           # silent this long (default 2x heartbeat): failed and retried
    retries: 2              # times a lost or failed trial is queued again
    space:
      lr: {low: 0.0003, high: 0.01, log: true}
      weight_decay: {low: 0.00001, high: 0.01, log: true}
      augment: {values: [0.0, 0.3, 0.6]}

gates:                      # a model failing any of these can never be released
  min_accuracy: 0.0
  beat_majority: true       # accuracy must exceed the commonest class's share of the test set
  min_precision: 0.0        # or per class, e.g. {cat: 0.9, dog: 0.9}
  min_recall: 0.0
  max_recall_gap: 1.0

model:
  name: pets
  quantize: false           # keep an int8 model when faster and within 0.5 points
  parity_images: 256
  pet_threshold: 0.35       # ImageNet pet score under this: "no pet" (out of distribution)

pipeline:
  dataset: pets
  source: null              # ingested first when set

serve:
  max_batch: 16             # dynamic micro-batching: up to this many images per inference
  max_wait_ms: 4.0          # ... waiting at most this long to fill a batch
  queue_size: 256           # a full queue answers 503 with Retry-After at once
  timeout_s: 10.0
  max_upload_bytes: 10485760  # whole request body, any encoding; more is a 413
  max_pixels: 24000000      # declared size; larger images are a 422
  decode_budget_bytes: 268435456  # decode memory of all images decoded at once
  poll_s: 1.0               # how often a running service checks the alias it serves
  log_flush_s: 0.5
  log_sync: false           # true: fsync each answered prediction first (else every log_flush_s)
  prefer_int8: true         # the int8 model when packaging kept one (faster, within 0.5 points)
  keep_inputs: true         # keep input images (content-addressed): saliency, retraining
  inputs_min_free_mb: 1024  # ... but not while less disk than this is free (0: always)
  max_connections: 512      # served at once; more are answered 503
  keep_alive_s: 5.0         # idle kept-alive connections close after this
  body_timeout_s: 30.0      # a request body that takes longer is a 408 and the connection closes
  hosts: []                 # on loopback, Host names answered besides loopback ones (a proxy's)

environments:               # servers bind to their host; 127.0.0.1 unless you change it
                            # names: letters, digits, _ . - (they name folders and pidfiles)
  staging: {host: 127.0.0.1, port: 8081, alias: staging}
  production: {host: 127.0.0.1, port: 8080, alias: production}

release:
  mode: delivery            # delivery: QA approval required; deployment: automatic
  staging: staging          # where `kennel deploy` certifies; other environments take releases
  to: production            # where mode deployment releases a version that passed
  certification:
    max_p99_ms: 5000.0
    min_throughput: 0.0
    max_images: 2000

auth:
  local_role: null          # a CLI user's role without a token (e.g. admin for a one-person
                            # project); null: deploy/release/rollback/alias/publish need --token

feed:                       # pattern 3: signed model bundles published on a stream
  url: ""                   # e.g. redis://127.0.0.1:6379/0 (empty: do not publish)
  stream: kennel:models
  aliases: [production]     # moving one of these aliases publishes the new version

monitor:                    # `kennel monitor run` (cron it daily) and `kennel monitor watch`
  environment: production
  window: 24h
  alpha: 0.05               # drift tests share this false-alarm level per window (Bonferroni)
  min_psi: 0.1              # ... and flag only shifts at least this large (PSI)
  min_window: 30            # fewer predictions in a window: no drift verdict
  min_labels: 20            # fewer feedback labels: accuracy is estimated (CBPE), not measured
  low_confidence: 0.6
  webhook_url: ""           # POST target of webhook actions
  smtp: {host: "", port: 25, sender: kennel@localhost, to: []}
  retrain_epochs: null      # the retrain action's epochs (null: the champion's own)
  rules:                    # actions: log, webhook, email, rollback, retrain
    - {name: data-drift, metric: drift.drifted, op: ">=", threshold: 1}
    - name: accuracy-drop
      metric: performance.accuracy
      op: "<"
      threshold: 0.85
      severity: critical
    - {name: estimated-accuracy-drop, metric: performance.estimated_accuracy, op: "<",
       threshold: 0.85}
    - {name: low-confidence, metric: integrity.low_confidence_rate, threshold: 0.3}
    - {name: decode-failures, metric: integrity.decode_failure_rate, threshold: 0.05}
    - {name: not-a-pet, metric: integrity.ood_rate, threshold: 0.3}  # no cat or dog there
    - {name: class-bias, metric: fairness.recall_gap, threshold: 0.2}
    - {name: device-anomaly, metric: telemetry.anomalies, op: ">=", threshold: 1}

telemetry:                  # `kennel telemetry ingest`: devices publish on TOPIC/DEVICE/SENSOR
  topic: kennel/devices     # one prefix per project on a shared broker: levels of letters,
                            # digits, . _ - joined by /
"""
