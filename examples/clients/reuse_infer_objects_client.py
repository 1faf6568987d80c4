#!/usr/bin/env python3
"""A loop that builds its InferInput and InferRequestedOutput objects once
and reuses them for every request, with one input and one output in shared
memory of its own (tritonclient.utils.shared_memory, registered by hand)
beside inline tensors, as long-running clients and perf tools do. Run it
unedited under the accelerator: its own regions stay its own.

    python -m tritonshm.accelerate --stats examples/clients/reuse_infer_objects_client.py -u localhost:8000

Model: `simple` (INT32 INPUT0, INPUT1 [1, 16] -> OUTPUT0 = sum, OUTPUT1 = difference).
"""

import argparse
import os
import sys

import numpy as np
import tritonclient.utils.shared_memory as shm

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("-v", "--verbose", action="store_true", default=False, help="Enable verbose output")
    parser.add_argument(
        "-u", "--url", type=str, default=None, help="Inference server URL (default localhost:8000, gRPC 8001)"
    )
    parser.add_argument("-i", "--protocol", type=str, default="http", choices=["http", "grpc"], help="Protocol to use")
    parser.add_argument("-n", "--iterations", type=int, default=5, help="Requests to send")
    FLAGS = parser.parse_args()

    if FLAGS.protocol == "grpc":
        import tritonclient.grpc as client_module
    else:
        import tritonclient.http as client_module
    url = FLAGS.url or ("localhost:8001" if FLAGS.protocol == "grpc" else "localhost:8000")
    triton_client = client_module.InferenceServerClient(url=url, verbose=FLAGS.verbose)

    # One region of our own: INPUT1 at its start, OUTPUT1 after it. Keys and
    # names unique to this process, so that two runs never collide.
    byte_size = 16 * 4
    name = f"reuse_example_{os.getpid()}"
    key = "/" + name
    region = shm.create_shared_memory_region(name, key, 2 * byte_size)
    triton_client.register_system_shared_memory(name, key, 2 * byte_size)

    inputs = [
        client_module.InferInput("INPUT0", [1, 16], "INT32"),
        client_module.InferInput("INPUT1", [1, 16], "INT32"),
    ]
    inputs[1].set_shared_memory(name, byte_size)
    outputs = [client_module.InferRequestedOutput("OUTPUT0"), client_module.InferRequestedOutput("OUTPUT1")]
    outputs[1].set_shared_memory(name, byte_size, offset=byte_size)

    failed = False
    for iteration in range(FLAGS.iterations):
        input0_data = np.expand_dims(np.arange(start=iteration, stop=iteration + 16, dtype=np.int32), axis=0)
        input1_data = np.full(shape=(1, 16), fill_value=iteration * 10, dtype=np.int32)
        inputs[0].set_data_from_numpy(input0_data)
        shm.set_shared_memory_region(region, [input1_data])
        input0_data += 1000  # the request sends what set_data_from_numpy saw, not this

        results = triton_client.infer("simple", inputs, outputs=outputs)

        output0_data = results.as_numpy("OUTPUT0")
        output1_data = shm.get_contents_as_numpy(region, np.int32, [1, 16], offset=byte_size)
        expected0 = (input0_data - 1000) + input1_data
        expected1 = (input0_data - 1000) - input1_data
        if not np.array_equal(output0_data, expected0) or not np.array_equal(output1_data, expected1):
            print(f"iteration {iteration}: incorrect result")
            failed = True

    # Our region is still ours, and still registered: unregister it ourselves.
    status = triton_client.get_system_shared_memory_status(name)
    registered = bool(status.regions) if FLAGS.protocol == "grpc" else bool(status)
    triton_client.unregister_system_shared_memory(name)
    shm.destroy_shared_memory_region(region)
    triton_client.close()
    if failed or not registered:
        print("reuse infer error" + ("" if registered else ": our region was unregistered behind our back"))
        sys.exit(1)
    print("PASS: reuse infer objects")
