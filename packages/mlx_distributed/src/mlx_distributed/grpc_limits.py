"""Message size limits shared by node servers and their clients."""

# Hidden states of a long prompt can be large: 8 x 4096 positions x 8192
# bfloat16 values is 512 MiB, so the limit is set well above the default 4 MiB.
MAX_MESSAGE_BYTES = 1024 * 1024 * 1024
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
