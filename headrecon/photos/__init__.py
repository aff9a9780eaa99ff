"""From photographs alone: what a method needs that a user's capture does not come with.

* :mod:`.detect`: MediaPipe face-mesh landmarks and person masks (weights inside the wheel: offline);
* :mod:`.model`: the sparse ICT-FaceKit morphable model of the face-mesh points (a shipped derivative);
* :mod:`.fit`: robust triangulation, the morphable-model fit with known cameras (:func:`fit_head`) and without
  (:func:`fit_cameras`);
* :mod:`.frame`: where a prior method places its prior (``--frame``);
* :mod:`.masks`: masks for views that have none;
* :mod:`.prepare`: ``headrecon-prepare PHOTOS --out SCENE`` (cameras from the faces).

MediaPipe is imported only when landmarks or masks are needed.
"""
