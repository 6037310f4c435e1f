"""Torch-free input and output shared by training and deployment.

Images are decoded and resized here the same way for the Lightning data modules and the OpenVINO
inferencer; the MVTec AD folder rules (where normal images, defects and masks live) are written
once in :mod:`~otx_anomaly.io.layout`; model and result folders are replaced atomically by
:mod:`~otx_anomaly.io.files`. Nothing here imports torch, Lightning or anomalib.
"""
