# amaranth: UnusedElaboratable=no
"""The board top's LED heartbeat."""

from amaranth.sim import Simulator

from boards.top import Heartbeat


def test_heartbeat_is_low_then_high_for_half_a_period_each():
    dut = Heartbeat(clk_freq=20)          # nearest power of two: 16 cycles per blink
    assert dut.period == 16
    assert Heartbeat(clk_freq=12e6).period == 1 << 24
    levels = []

    async def bench(ctx):
        for _ in range(3 * dut.period):
            levels.append(ctx.get(dut.led))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert levels == ([0] * 8 + [1] * 8) * 3
