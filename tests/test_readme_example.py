"""The README's example of testing one's own bound, run as written there."""
from hypothesis import given, settings
import heterosim as hs
from heterosim.testing import block_quadratics, assert_bound_holds

@settings(max_examples=10, deadline=None)
@given(block_quadratics(max_kappa=10.0))
def test_gd_within_its_bound(problem):
    def bound(problem, start):  # B1: GD at eta = 1/L_2 reaches ||g|| <= eps within 2 L_2 Delta / eps^2 steps
        return hs.bounds.gd_nonconvex(L2=problem.L2, delta=start.delta, eps=0.1 * start.grad_l2)
    assert_bound_holds(problem, "gd", bound, seeds=[0, 1])
