"""The RunPod serverless worker for ComfyUI: small modules that docker/handler.py wires together.

Layout: settings (environment), comfy_client (HTTP/websocket talk to ComfyUI), comfy_process (start, attach, health,
restart), workflow (UI->API conversion, structure, cycles, overrides), inputs (base64/URL files), url_guard (SSRF-safe
fetching), namespace (each job's own input/output folders), file_refs (file names in the workflow pointed at the
namespace, escapes refused), outputs (collect, inline or S3), errors (readable failures), profiles (deployment
profiles), models (model strategies), doctor (health checks).
"""
