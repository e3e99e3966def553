// rsync wire primitives. Placeholder header; filled in by the protocol-27 work.
#pragma once
namespace sfs::protocol {}
