"""The RunPod serverless worker for ComfyUI: small modules that docker/handler.py wires together.

Layout: settings (environment), comfy_client (HTTP/websocket talk to ComfyUI), comfy_process (start, attach, restart),
workflow (UI->API conversion, checks, overrides), inputs (base64/URL files), outputs (collect, inline or S3),
errors (readable failures), models (model strategies), doctor (health checks).
"""
