// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Which hook a bridge uses is decided at attach and recorded in its
 * bridges entry, so detach and status follow what was really done. One
 * guard per bridge: attaching in one hook removes any program of ours in
 * the other (left by a lost pin set, with maps nobody edits any more).
 *
 * A bridge in NAT mode carries both programs; one in socket mode only the
 * ingress one. Socket mode rewrites nothing: replies leave from the
 * gateway address, and with route_localnet=0 nothing leaves the host from
 * loopback, so an egress program would only parse every packet out. The
 * bridge's mode (in @bridge) says which: attach sets it before hooking. */
#include <errno.h>
#include <string.h>

#include "cli.h"

static bool has_egress(const struct dh_bridge *bridge)
{
	return bridge->mode != DH_MODE_SOCKET;
}

int dh_hook_attach(const struct dh_state *st, int ifindex, enum dh_hook hook, struct dh_bridge *bridge)
{
	bool created_clsact = false;
	int err;

	bridge->flags &= ~(DH_BRIDGE_TCX | DH_BRIDGE_CREATED_CLSACT);
	if (hook != DH_HOOK_CLSACT) {
		err = dh_tcx_attach(st, ifindex, has_egress(bridge));
		if (!err) {
			err = dh_clsact_detach(ifindex, false);
			if (err)  /* all or nothing: the caller undoes nothing it did not record */
				dh_tcx_detach(ifindex);
			else
				bridge->flags |= DH_BRIDGE_TCX;
			return err;
		}
		if (hook == DH_HOOK_TCX || err != -EOPNOTSUPP)
			return err;
		dh_debug("no tcx on this kernel: attaching with clsact");
	}
	err = dh_clsact_attach(ifindex, st->prog_ingress_fd, has_egress(bridge) ? st->prog_egress_fd : -1,
			       &created_clsact);
	if (err)
		return err;
	err = dh_tcx_detach(ifindex);
	if (err == -EINVAL)
		err = 0;  /* no tcx on this kernel: nothing there */
	if (err)
		dh_clsact_detach(ifindex, created_clsact);
	else if (created_clsact)
		bridge->flags |= DH_BRIDGE_CREATED_CLSACT;
	return err;
}

int dh_hook_detach(const struct dh_state *st, int ifindex, const struct dh_bridge *bridge)
{
	if (bridge->flags & DH_BRIDGE_TCX)
		return dh_tcx_detach(ifindex);
	return dh_clsact_detach(ifindex, bridge->flags & DH_BRIDGE_CREATED_CLSACT);
}

bool dh_hook_attached(const struct dh_state *st, int ifindex, const struct dh_bridge *bridge)
{
	if (bridge->flags & DH_BRIDGE_TCX)
		return dh_tcx_attached(st, ifindex, has_egress(bridge));
	return dh_clsact_presence(ifindex, has_egress(bridge)) == DH_TC_OURS;
}

/* The egress program as @bridge's mode wants it, the ingress guard left
 * where it is: added for NAT mode (before route_localnet=1), removed for
 * socket mode (after route_localnet is back to its saved value). A
 * conversion's step; the ingress program is in place already. */
int dh_hook_egress_sync(const struct dh_state *st, int ifindex, const struct dh_bridge *bridge)
{
	if (bridge->flags & DH_BRIDGE_TCX)
		return has_egress(bridge) ? dh_tcx_egress_attach(st, ifindex) : dh_tcx_egress_detach(ifindex);
	return has_egress(bridge) ? dh_clsact_egress_attach(ifindex, st->prog_egress_fd)
				  : dh_clsact_egress_detach(ifindex);
}

const char *dh_hook_name(const struct dh_bridge *bridge)
{
	return bridge->flags & DH_BRIDGE_TCX ? "tcx" : "clsact";
}

bool dh_hook_unrecorded_present(int ifindex)
{
	return dh_tcx_count_ours(ifindex) > 0 || dh_clsact_any_ours(ifindex);
}

/* An ingress program of ours, in either hook: what keeps 127/8 out of
 * the host (the egress one only keeps NAT mode's replies honest, and a
 * socket-mode bridge has none). */
bool dh_hook_unrecorded_guard(int ifindex)
{
	return dh_tcx_guard_present(ifindex) || dh_clsact_guard_ours(ifindex);
}

int dh_hook_remove_unrecorded(int ifindex)
{
	int err = dh_tcx_detach(ifindex), clsact_err = dh_clsact_detach(ifindex, false);

	if (err == -EINVAL)
		err = 0;  /* no tcx on this kernel */
	return err ? err : clsact_err;
}
