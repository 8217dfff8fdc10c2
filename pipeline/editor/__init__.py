"""The face editor: paint a label map in the browser and see each trained model's face
(`python -m pipeline.editor --results results/`). `backend` holds the run's models and checks
every request; `server` is its HTTP side; the page is in static/."""
