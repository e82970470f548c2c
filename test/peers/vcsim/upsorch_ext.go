// UPS-orchestrator extensions to the govmomi 0.24 simulator. build.sh copies this file into a
// private copy of Debian's source as simulator/upsorch_ext.go and makes three small edits there:
//   - VirtualMachine.ShutdownGuest        -> shutdownGuestStock (replaced below)
//   - PropertyCollector.RetrievePropertiesEx -> retrievePropertiesExStock (replaced below, with paging)
//   - Service.call consults upsorchCallHook before dispatching (licence restrictions)
//
// What stock 0.24 does and a real vSphere does not, and what this file changes:
//   - guest.toolsRunningStatus is always guestToolsNotRunning: here Tools run whenever a VM is
//     powered on, except for VMs whose name starts with a -no-tools prefix.
//   - ShutdownGuest powers the VM off at once: here it needs running Tools (ToolsUnavailable
//     otherwise, as on a real host), returns at once and the guest powers off after
//     -guest-shutdown-delay; guests named with an -ignore-shutdown prefix never do.
//   - ShutdownHost_Task / RebootHost_Task are missing (MethodNotFound): here they refuse with
//     InvalidState unless the host is in maintenance mode or force is set, power off the host's
//     VMs, and leave the host poweredOff / notResponding (shutdown).
//   - RetrievePropertiesEx ignores options.maxObjects and ContinueRetrievePropertiesEx is missing:
//     here results are paged with a token, as vCenter does.
//   - -free-license: the ESXi free-hypervisor licence (editionKey esxBasic), with which every
//     state-changing call fails with RestrictedVersion, as on a real free ESXi.
package simulator

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// UpsorchOptions configure the extensions; see main.go for the flags.
type UpsorchOptions struct {
	GuestShutdownDelay     time.Duration
	NoToolsPrefixes        []string
	IgnoreShutdownPrefixes []string
	FreeLicense            bool
}

var upsorch UpsorchOptions

// upsorchCallHook, when set, may answer a call before it is dispatched (build.sh wires it into Service.call).
var upsorchCallHook func(ctx *Context, method *Method) soap.HasFault

func hasAnyPrefix(name string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------------------------
// VMware Tools follow the power state.

func upsorchSyncTools(vm *VirtualMachine) {
	status := string(types.VirtualMachineToolsRunningStatusGuestToolsNotRunning)
	tools := types.VirtualMachineToolsStatusToolsNotRunning
	state := "notRunning"
	if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn && !hasAnyPrefix(vm.Name, upsorch.NoToolsPrefixes) {
		status, tools, state = string(types.VirtualMachineToolsRunningStatusGuestToolsRunning), types.VirtualMachineToolsStatusToolsOk, "running"
	}
	if vm.Guest == nil {
		vm.Guest = &types.GuestInfo{}
	}
	if vm.Guest.ToolsRunningStatus == status && vm.Guest.ToolsStatus == tools {
		return
	}
	if vm.Summary.Guest != nil {
		vm.Summary.Guest.ToolsRunningStatus = status
		vm.Summary.Guest.ToolsStatus = tools
	}
	Map.Update(vm, []types.PropertyChange{
		{Name: "guest.toolsRunningStatus", Val: status},
		{Name: "guest.toolsStatus", Val: tools},
		{Name: "guest.guestState", Val: state},
	})
}

// powerWatcher is a registry handler: every power-state change of a VM re-derives its Tools status.
type powerWatcher struct{}

func (powerWatcher) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "UpsorchPowerWatcher", Value: "upsorch"}
}
func (powerWatcher) PutObject(mo.Reference)                     {}
func (powerWatcher) RemoveObject(types.ManagedObjectReference) {}
func (powerWatcher) UpdateObject(obj mo.Reference, changes []types.PropertyChange) {
	if obj.Reference().Type != "VirtualMachine" {
		return
	}
	for _, c := range changes {
		if c.Name == "runtime.powerState" {
			if vm, ok := Map.Get(obj.Reference()).(*VirtualMachine); ok {
				upsorchSyncTools(vm)
			}
			return
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Guest shutdown that takes time, needs Tools, and can be ignored.

func (vm *VirtualMachine) ShutdownGuest(ctx *Context, req *types.ShutdownGuest) soap.HasFault {
	body := &methods.ShutdownGuestBody{}
	if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		body.Fault_ = Fault("", &types.InvalidPowerState{RequestedState: types.VirtualMachinePowerStatePoweredOn, ExistingState: vm.Runtime.PowerState})
		return body
	}
	if vm.Guest == nil || vm.Guest.ToolsRunningStatus != string(types.VirtualMachineToolsRunningStatusGuestToolsRunning) {
		body.Fault_ = Fault("Cannot complete operation because VMware Tools is not running in this virtual machine.", &types.ToolsUnavailable{})
		return body
	}
	body.Res = new(types.ShutdownGuestResponse)
	if hasAnyPrefix(vm.Name, upsorch.IgnoreShutdownPrefixes) {
		return body // the guest never reacts, like an OS that ignores the request
	}
	ref := vm.Self
	time.AfterFunc(upsorch.GuestShutdownDelay, func() {
		target, ok := Map.Get(ref).(*VirtualMachine)
		if !ok {
			return
		}
		Map.WithLock(target, func() {
			if target.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
				target.shutdownGuestStock(internalContext, &types.ShutdownGuest{This: ref})
			}
		})
	})
	return body
}

// ---------------------------------------------------------------------------------------------
// Host shutdown and reboot.

func (h *HostSystem) upsorchHostPower(reboot bool, force bool) (types.AnyType, types.BaseMethodFault) {
	if !force && !h.Runtime.InMaintenanceMode {
		return nil, &types.InvalidState{}
	}
	for _, ref := range h.Vm {
		vm, ok := Map.Get(ref).(*VirtualMachine)
		if !ok {
			continue
		}
		Map.WithLock(vm, func() {
			if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOff {
				(&powerVMTask{vm, types.VirtualMachinePowerStatePoweredOff, internalContext}).Run(nil)
			}
		})
	}
	if reboot {
		now := time.Now()
		Map.Update(h, []types.PropertyChange{{Name: "runtime.bootTime", Val: &now}})
		return nil, nil
	}
	Map.Update(h, []types.PropertyChange{
		{Name: "runtime.powerState", Val: types.HostSystemPowerStatePoweredOff},
		{Name: "runtime.connectionState", Val: types.HostSystemConnectionStateNotResponding},
	})
	return nil, nil
}

func (h *HostSystem) ShutdownHostTask(req *types.ShutdownHost_Task) soap.HasFault {
	task := CreateTask(h, "shutdownHost", func(*Task) (types.AnyType, types.BaseMethodFault) {
		return h.upsorchHostPower(false, req.Force)
	})
	return &methods.ShutdownHost_TaskBody{Res: &types.ShutdownHost_TaskResponse{Returnval: task.Run()}}
}

func (h *HostSystem) RebootHostTask(req *types.RebootHost_Task) soap.HasFault {
	task := CreateTask(h, "rebootHost", func(*Task) (types.AnyType, types.BaseMethodFault) {
		return h.upsorchHostPower(true, req.Force)
	})
	return &methods.RebootHost_TaskBody{Res: &types.RebootHost_TaskResponse{Returnval: task.Run()}}
}

// ---------------------------------------------------------------------------------------------
// Paged RetrievePropertiesEx.

type upsorchPage struct {
	rest []types.ObjectContent
	size int
	at   time.Time
}

var upsorchPages = struct {
	sync.Mutex
	m map[string]*upsorchPage
}{m: map[string]*upsorchPage{}}

// nextPage cuts objs to at most size and keeps the rest under a fresh token (at most 1000 kept, 10 min each).
func nextPage(res *types.RetrieveResult, objs []types.ObjectContent, size int) {
	res.Objects, res.Token = objs, ""
	if size <= 0 || len(objs) <= size {
		return
	}
	res.Objects = objs[:size]
	token := uuid.New().String()
	upsorchPages.Lock()
	defer upsorchPages.Unlock()
	for k, p := range upsorchPages.m {
		if time.Since(p.at) > 10*time.Minute || len(upsorchPages.m) > 1000 {
			delete(upsorchPages.m, k)
		}
	}
	upsorchPages.m[token] = &upsorchPage{rest: objs[size:], size: size, at: time.Now()}
	res.Token = token
}

func (pc *PropertyCollector) RetrievePropertiesEx(ctx *Context, r *types.RetrievePropertiesEx) soap.HasFault {
	res := pc.retrievePropertiesExStock(ctx, r)
	body, ok := res.(*methods.RetrievePropertiesExBody)
	if !ok || body.Fault_ != nil || body.Res == nil || body.Res.Returnval == nil {
		return res
	}
	nextPage(body.Res.Returnval, body.Res.Returnval.Objects, int(r.Options.MaxObjects))
	return body
}

func (pc *PropertyCollector) ContinueRetrievePropertiesEx(ctx *Context, r *types.ContinueRetrievePropertiesEx) soap.HasFault {
	body := &methods.ContinueRetrievePropertiesExBody{}
	upsorchPages.Lock()
	page, ok := upsorchPages.m[r.Token]
	delete(upsorchPages.m, r.Token)
	upsorchPages.Unlock()
	if !ok {
		body.Fault_ = Fault("", &types.InvalidArgument{InvalidProperty: "token"})
		return body
	}
	res := &types.RetrieveResult{}
	nextPage(res, page.rest, page.size)
	body.Res = &types.ContinueRetrievePropertiesExResponse{Returnval: *res}
	return body
}

func (pc *PropertyCollector) CancelRetrievePropertiesEx(ctx *Context, r *types.CancelRetrievePropertiesEx) soap.HasFault {
	upsorchPages.Lock()
	delete(upsorchPages.m, r.Token)
	upsorchPages.Unlock()
	return &methods.CancelRetrievePropertiesExBody{Res: new(types.CancelRetrievePropertiesExResponse)}
}

// ---------------------------------------------------------------------------------------------
// Free licence: read-only API.

var upsorchFreeLicense = types.LicenseManagerLicenseInfo{
	LicenseKey: "00000-00000-00000-00000-00001",
	EditionKey: "esxBasic",
	Name:       "VMware vSphere 7 Hypervisor",
	Total:      0,
	CostUnit:   "cpuPackage",
	Properties: []types.KeyAnyValue{
		{Key: "ProductName", Value: "VMware ESX Server"},
		{Key: "ProductVersion", Value: "7.0"},
		{Key: "feature", Value: types.KeyValue{Key: "maxRAM:0", Value: "Up to 0 GB of memory"}},
	},
}

// upsorchRestricted: the calls a free licence refuses (everything that changes state).
func upsorchRestricted(name string) bool {
	if strings.HasSuffix(name, "_Task") {
		return true
	}
	switch name {
	case "ShutdownGuest", "RebootGuest", "StandbyGuest", "CreateFolder", "SetCustomValue":
		return true
	}
	return false
}

// ---------------------------------------------------------------------------------------------
// Setup.

// UpsorchArrange renames VMs and moves VMs into new folders (under their current folder). Call after Model.Create.
func UpsorchArrange(renames map[string]string, folders map[string][]string) error {
	byName := func(name string) (*VirtualMachine, error) {
		for _, e := range Map.All("VirtualMachine") {
			if vm, ok := e.(*VirtualMachine); ok && vm.Name == name {
				return vm, nil
			}
		}
		return nil, fmt.Errorf("no VM named %q", name)
	}
	for from, to := range renames {
		vm, err := byName(from)
		if err != nil {
			return err
		}
		Map.Update(vm, []types.PropertyChange{{Name: "name", Val: to}})
	}
	for folder, names := range folders {
		for _, name := range names {
			vm, err := byName(name)
			if err != nil {
				return err
			}
			parent, ok := Map.Get(*vm.Parent).(*Folder)
			if !ok {
				return fmt.Errorf("VM %q is not in a folder", name)
			}
			var target *Folder
			if e := Map.FindByName(folder, parent.ChildEntity); e != nil {
				target, _ = e.(*Folder)
			}
			if target == nil {
				res := parent.CreateFolder(internalContext, &types.CreateFolder{This: parent.Self, Name: folder})
				if f := res.Fault(); f != nil {
					return fmt.Errorf("create folder %q: %s", folder, f.String)
				}
				target = Map.Get(res.(*methods.CreateFolderBody).Res.Returnval).(*Folder)
			}
			res := target.MoveIntoFolderTask(internalContext, &types.MoveIntoFolder_Task{This: target.Self, List: []types.ManagedObjectReference{vm.Self}})
			if f := res.Fault(); f != nil {
				return fmt.Errorf("move %q into %q: %s", name, folder, f.String)
			}
		}
	}
	return nil
}

// UpsorchEnable switches the extensions on. Call after Model.Create and UpsorchArrange.
func UpsorchEnable(opts UpsorchOptions) {
	upsorch = opts
	Map.AddHandler(powerWatcher{})
	for _, e := range Map.All("VirtualMachine") {
		if vm, ok := e.(*VirtualMachine); ok {
			upsorchSyncTools(vm)
		}
	}
	if opts.FreeLicense {
		if lm, ok := Map.Get(*Map.content().LicenseManager).(*LicenseManager); ok {
			lm.Licenses = []types.LicenseManagerLicenseInfo{upsorchFreeLicense}
		}
		upsorchCallHook = func(ctx *Context, method *Method) soap.HasFault {
			if upsorchRestricted(method.Name) {
				return &serverFaultBody{Reason: Fault("Current license or ESXi version prohibits execution of the requested operation.", &types.RestrictedVersion{})}
			}
			return nil
		}
	}
}
