// Renders the flat status fields of the control protocol (protocol/control/control.h) as
// text for people or as JSON for scripts: "mirror.N.key" fields become a "mirrors" array,
// "a.b" fields nest as objects, "true"/"false" and integers keep their JSON types.
#pragma once

#include <string>

#include "protocol/control/control.h"

namespace sfs::tools {

std::string status_json(const protocol::control::Fields& fields);
std::string status_text(const protocol::control::Fields& fields);

}  // namespace sfs::tools
