import json, numpy as np
import charlm.train as T
def buggy(directory, model, optimizer, fingerprint):
    for name in ("checkpoint", "checkpoint.old"):
        path = directory / name
        if (path / T.STATE_FILE).exists():
            model.load_weights(path / "model.weights.h5")
            with np.load(path / "optimizer.npz") as slots:
                values = [slots[f"arr_{i}"] for i in range(len(slots.files))]
            for var, value in zip(optimizer.variables, values):
                var.assign(value)
            return json.loads((path / T.STATE_FILE).read_text())
    return None
T._load_checkpoint = buggy
