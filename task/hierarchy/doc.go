// Package hierarchy models the seeds' hierarchy of Administration
// Servers: a primary server with secondary and virtual servers deployed in
// its administration groups.
//
// # Inheritance
//
// A group task of the primary whose scope has "Distribute to secondary and
// virtual Administration Servers" (scope.Scope.DistributeToServers) is
// inherited by every secondary or virtual server deployed in the task's
// group (or in a subgroup, unless the task is for the group only). Node.
// Distribute sends the inherited tasks over the Link; the child's Node
// keeps one copy of each in its own task.Manager, scoped to the child's
// root group, so the child's engine runs it on the child's devices. A
// task of the same type that already exists on the child is left alone:
// both run, as the seeds say. Inherited copies are read-only on the child:
// wrap the child Manager's Authorizer with ReadOnly so only the Node may
// modify or delete them; Node.Tasks shows them as inherited with the
// server they come from.
//
// # Roll-up
//
// Node.Report sends the statistics of every inherited copy to the parent,
// keyed by the parent's task id; the parent keeps them per child server
// ("Statistics from secondary Servers": Node.SecondaryStatistics) and sums
// them with its own in Node.RolledUp.
//
// # Link
//
// Servers talk through the Link interface; InProc connects Nodes in one
// process (tests, simulations). A network Link calls the same Node
// methods (ReceiveTasks, ReceiveStatistics) on the other side.
//
// # Errors
//
// Configuration errors are ValidationErrors naming the field; an edit of
// an inherited copy through a ReadOnly-wrapped Manager fails with
// task.ErrPermission.
package hierarchy
