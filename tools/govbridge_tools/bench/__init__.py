"""``govbridge bench``: the whole pipeline beside a raw aio-pika relay hop, measured in one run.

``pipeline`` drives bridge processes from outside (signed webhook pushes in, an Open311
simulator and a reply sink in a separate process so their CPU is not counted as the
bridge's); ``relay`` and ``triage`` measure the runtime alone and the triage stage alone.
"""
