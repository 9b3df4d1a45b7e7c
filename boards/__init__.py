"""mulfree on FPGA boards: the host link, board tops, open-toolchain builds, the host driver.

=========================== =================================================================
module                      what it holds
=========================== =================================================================
``boards.protocol``         the model: UART line coding, frames (CRC-16/CCITT-FALSE),
                            commands, ``ReferenceDevice``, words on bytes (Python only)
``boards.uart``             ``UARTReceiver`` / ``UARTTransmitter`` (8N1, stream interfaces)
``boards.dispatcher``       ``CommandDispatcher``: frame parser, checksum, command execution
``boards.link``             ``HostLink``: receiver -> dispatcher -> transmitter
``boards.adapters``         byte streams <-> word streams, the counter byte multiplexer
``boards.top``              ``BoardCore`` (link + a design), ``BoardTop`` (on a board's pins),
                            ``LinkLoopback`` (the link self-test design), ``Heartbeat`` (LED)
``boards.accelerator``      ``AcceleratorTarget`` (the accelerator behind the link) and
                            ``BoardBackend`` (``sim.run_layer`` backend over the link)
``boards.host``             ``BoardClient`` (requests, retries on refusal), ``SerialTransport``
``boards.simulated``        ``SimulatedSerial`` (a serial port into the Amaranth simulator),
                            ``TcpBridge`` (that port on ``socket://``)
``boards.platforms``        board names -> amaranth-boards platforms, device capacities
``boards.build``            synthesis, fit check, place-and-route, packing, report
=========================== =================================================================
"""
