-- shitenno.lua: dovecot 2.4 passdb/userdb through shitenno-dovecot.
--
-- Dovecot 2.4 removed the dict passdb/userdb drivers (commit 27ca066716,
-- "auth: Drop passdb/userdb dict - Lua driver can be used instead"). This
-- script keeps shitenno in front of the backend on 2.4: it speaks the same
-- proxy dict protocol dovecot 2.3's auth dict driver spoke, to the same
-- shitenno-dovecot unix socket, so the backend receives exactly the same
-- requests ({"Verb":"passdb","Object":{"Context":"shared","Object":<user>}}).
--
-- Debian packages: dovecot-auth-lua, lua-socket, lua-cjson (or lua-dkjson).
--
--   passdb shitenno {
--     driver = lua
--     lua_file = /usr/local/share/shitenno/dovecot/shitenno.lua
--     use_worker = yes
--     lua_settings {
--       socket = /run/shitenno-dovecot
--       timeout = 6
--     }
--   }
--   userdb shitenno { (same) }
--
-- lua_settings (all optional):
--   socket       shitenno-dovecot's socket (default /run/shitenno-dovecot)
--   timeout      seconds for connect, send and each reply; keep it a little
--                above shitenno's Timeout (default 5 s) so that shitenno
--                answers F before this gives up (default 6)
--   dict_name    name sent in the hello (default shitenno)
--   passdb_verb  key prefix for passdb lookups (default passdb)
--   userdb_verb  key prefix for userdb lookups (default userdb)
--   json         cjson, dkjson or auto (default: cjson, else dkjson)
--
-- Results: O -> *_RESULT_OK with the JSON object's string, number and
-- boolean fields; N -> *_RESULT_USER_UNKNOWN; F, any I/O error, timeout,
-- protocol error or bad JSON -> *_RESULT_INTERNAL_FAILURE (a temporary
-- failure: a broken backend must never look like an unknown user).
--
-- The script does blocking I/O, so it must run in auth-worker processes
-- (use_worker = yes in the passdb/userdb block). Each auth-worker process
-- has its own Lua states (one for the passdb, one for the userdb), and each
-- state keeps one persistent connection.

local unix = require("socket.unix")
local socket = require("socket")

-- JSON decoders by name; pick_json chooses one in script_init.
local json_decode, json_null

local json_loaders = {
	-- lua-cjson, a private instance so that settings changed by other
	-- scripts in this process do not apply.
	cjson = function()
		local c = require("cjson").new()
		-- Bounded nesting (nested values are dropped anyway) and strict
		-- JSON numbers (no NaN, Infinity or hex).
		if c.decode_max_depth then c.decode_max_depth(16) end
		if c.decode_invalid_numbers then c.decode_invalid_numbers(false) end
		return function(s) return c.decode(s) end, c.null
	end,
	-- dkjson (pure Lua, package lua-dkjson).
	dkjson = function()
		local dk = require("dkjson")
		local null = {}
		return function(s)
			local v, pos, err = dk.decode(s, 1, null)
			if err then error(err) end
			-- dkjson stops after the first value; trailing bytes are an error
			-- here as they are for cjson and dovecot.
			if s:find("%S", pos) then error("trailing data after JSON value") end
			return v
		end, null
	end,
}

-- pick_json loads the decoder named by the json setting ("auto": cjson,
-- else dkjson) and fails loudly when it is missing.
local function pick_json(name)
	local order = { name }
	if name == "auto" then order = { "cjson", "dkjson" } end
	local errs = {}
	for _, n in ipairs(order) do
		local load = json_loaders[n]
		if not load then error("shitenno.lua: unknown json module " .. tostring(n)) end
		local ok, dec, null = pcall(load)
		if ok then
			json_decode, json_null = dec, null
			return
		end
		errs[#errs + 1] = tostring(dec)
	end
	error("shitenno.lua: no JSON module (install lua-cjson or lua-dkjson): " .. table.concat(errs, "; "))
end

-- Dovecot's dict client refuses reply lines over 64 KiB
-- (DICT_CLIENT_MAX_LINE_LENGTH); so does this script.
local MAX_LINE = 64 * 1024

local settings = {
	socket = "/run/shitenno-dovecot",
	timeout = 6,
	dict_name = "shitenno",
	passdb_verb = "passdb",
	userdb_verb = "userdb",
	json = "auto",
}

-- Per-process connection state: the socket and the bytes read past the
-- last reply line (always empty between lookups on a healthy connection).
local conn = nil
local rbuf = ""

-- Tab escaping of the dict protocol (dovecot src/lib/strescape.c,
-- str_append_tabescaped / str_tabunescape): 0x01 is the escape byte.
local ESC = {
	["\1"] = "\1" .. "1",
	["\t"] = "\1t",
	["\n"] = "\1n",
	["\r"] = "\1r",
	["\0"] = "\1" .. "0",
}
local UNESC = { ["1"] = "\1", t = "\t", n = "\n", r = "\r", ["0"] = "\0" }

local function tabescape(s)
	return (s:gsub("[%z\1\t\n\r]", ESC))
end

local function tabunescape(s)
	-- "\1X" for an unknown X is X; a trailing lone "\1" is dropped, as
	-- dovecot does with truncated input.
	return (s:gsub("\1(.?)", function(c) return UNESC[c] or c end))
end

-- first_field returns the first raw-TAB-separated field of s: dovecot's own
-- dict server may append timing fields to replies, which carry no value.
local function first_field(s)
	local i = s:find("\t", 1, true)
	if i then return s:sub(1, i - 1) end
	return s
end

local function disconnect()
	if conn then conn:close() end
	conn = nil
	rbuf = ""
end

local function connect()
	local c, err = (unix.stream or unix)()
	if not c then return nil, "socket: " .. tostring(err) end
	c:settimeout(settings.timeout, "t")
	local ok, cerr = c:connect(settings.socket)
	if not ok then
		c:close()
		return nil, "connect " .. settings.socket .. ": " .. tostring(cerr)
	end
	-- The hello gets no reply. Major 3, minor 2 is what dovecot 2.3.17+
	-- sends and the lookup format this script uses (L<key>\t<user>), so
	-- shitenno-dovecot (majors 2, 3 and 4) handles this connection exactly
	-- like one from dovecot 2.3's auth dict driver; 4 would claim 2.4's
	-- transaction format, 2 a lookup without the user field.
	local hello = "H3\t2\t0\t\t" .. tabescape(settings.dict_name) .. "\n"
	local sent, serr = c:send(hello)
	if not sent then
		c:close()
		return nil, "send hello: " .. tostring(serr)
	end
	conn = c
	rbuf = ""
	return true
end

-- stale reports whether the idle connection was closed by the peer (for
-- example shitenno's idle timeout or a restart) or holds unexpected bytes;
-- either way it must not be used.
local function stale()
	local r = socket.select({ conn }, nil, 0)
	if not r or #r == 0 then return false end
	conn:settimeout(0)
	local data, err, partial = conn:receive(4096)
	conn:settimeout(settings.timeout, "t")
	local got = data or partial or ""
	return err == "closed" or #got > 0
end

-- read_line reads one reply line, bounded in size and time.
local function read_line()
	local deadline = socket.gettime() + settings.timeout
	while true do
		local i = rbuf:find("\n", 1, true)
		if i then
			local line = rbuf:sub(1, i - 1)
			rbuf = rbuf:sub(i + 1)
			return line
		end
		if #rbuf > MAX_LINE then return nil, "reply line too long" end
		local left = deadline - socket.gettime()
		if left <= 0 then return nil, "timeout" end
		local r, _, serr = socket.select({ conn }, nil, left)
		if not r or #r == 0 then
			if serr == "timeout" or serr == nil then return nil, "timeout" end
			return nil, serr
		end
		conn:settimeout(0)
		local data, err, partial = conn:receive(MAX_LINE)
		conn:settimeout(settings.timeout, "t")
		local got = data or partial or ""
		rbuf = rbuf .. got
		if err == "closed" then
			if rbuf:find("\n", 1, true) then
				-- A full line arrived just before the close: use it.
			else
				return nil, "closed"
			end
		elseif err and err ~= "timeout" then
			return nil, err
		end
	end
end

-- lookup sends one L command and returns "O", value / "N" / "F", reason.
-- It reconnects once when a reused connection turns out to be closed;
-- lookups are idempotent, so a resend is safe.
local function lookup(key, user)
	local cmd = "L" .. tabescape(key) .. "\t" .. tabescape(user) .. "\n"
	for attempt = 1, 2 do
		local fresh = false
		if conn and stale() then disconnect() end
		if not conn then
			local ok, err = connect()
			if not ok then return "F", err end
			fresh = true
		end
		local line, err, raw
		local sent, serr = conn:send(cmd)
		if not sent then
			raw, err = tostring(serr), "send: " .. tostring(serr)
		else
			line, err = read_line()
			raw = err
		end
		if line then
			local op, rest = line:sub(1, 1), line:sub(2)
			if op == "O" then
				return "O", tabunescape(first_field(rest))
			elseif op == "M" then
				-- Several values, escaped twice: the first one is the value
				-- (what dovecot 2.3's auth driver used).
				return "O", tabunescape(first_field(tabunescape(first_field(rest))))
			elseif op == "N" then
				return "N"
			elseif op == "F" then
				local reason = tabunescape(first_field(rest))
				if reason == "" then reason = "failure" end
				return "F", "shitenno-dovecot replied: " .. reason
			end
			-- Anything else (async ids, garbage) leaves the connection in an
			-- unknown state.
			disconnect()
			return "F", "unexpected reply from shitenno-dovecot"
		end
		-- No reply: after a timeout or an error the connection may still
		-- deliver a late answer, which would be taken for the next one.
		disconnect()
		-- Only a connection that was closed under us is retried: after a
		-- timeout, waiting again would double the delay dovecot sees.
		raw = tostring(raw)
		local closed = raw == "closed" or raw:find("pipe", 1, true) or raw:find("reset", 1, true)
		if fresh or not closed or attempt == 2 then
			return "F", tostring(err)
		end
	end
end

-- number_text renders a JSON number like its source text: dovecot 2.4.1
-- turns a Lua number into an integer (lua_tointeger), which would change
-- 1.5 into 0 and big values through float rounding.
local function number_text(n)
	if n == math.floor(n) and n > -2 ^ 63 and n < 2 ^ 63 then
		return string.format("%.0f", n)
	end
	local s = string.format("%.14g", n)
	if tonumber(s) ~= n then s = string.format("%.17g", n) end
	return s
end

-- fields decodes the reply value: a flat JSON object. Only string, number
-- and boolean members are kept (null is "absent", as with 2.3's dict
-- driver); booleans stay booleans, which dovecot turns into yes/no.
local function fields(value, req)
	if not json_decode then pick_json(settings.json) end
	if not value:match("^%s*{") then return nil, "reply is not a JSON object" end
	local ok, obj = pcall(json_decode, value)
	if not ok or type(obj) ~= "table" then return nil, "reply is not valid JSON" end
	local out = {}
	for k, v in pairs(obj) do
		if type(k) == "string" and k ~= "" then
			local t = type(v)
			if t == "string" or t == "boolean" then
				out[k] = v
			elseif t == "number" then
				out[k] = number_text(v)
			elseif v ~= json_null then
				req:log_debug("shitenno: ignoring non-scalar field " .. k)
			end
		end
	end
	return out
end

local function run(req, verb, ok_code, unknown_code, fail_code)
	local user = req.user or ""
	local status, value = lookup("shared/" .. verb .. "/" .. user, user)
	if status == "N" then
		return unknown_code, "user unknown"
	elseif status == "F" then
		-- dovecot logs this string as the error; it never holds backend
		-- data or passwords (shitenno's F reasons are short and safe).
		return fail_code, "shitenno " .. verb .. " lookup failed: " .. tostring(value)
	end
	local t, err = fields(value, req)
	if not t then
		return fail_code, "shitenno " .. verb .. " lookup failed: " .. err
	end
	return ok_code, t
end

-- script_init receives lua_settings { } as a table of strings.
function script_init(args)
	if type(args) == "table" then
		for k, v in pairs(args) do
			if settings[k] ~= nil then
				if k == "timeout" then
					local n = tonumber(v)
					if not n or n <= 0 then
						error("shitenno.lua: timeout must be a positive number of seconds")
					end
					settings.timeout = n
				else
					settings[k] = tostring(v)
				end
			elseif dovecot and dovecot.i_warning then
				-- A misspelt setting would otherwise silently keep the default.
				dovecot.i_warning("shitenno.lua: unknown lua_settings key " .. tostring(k))
			end
		end
	end
	pick_json(settings.json)
	return 0
end

function script_deinit()
	disconnect()
end

function auth_passdb_lookup(req)
	local a = dovecot.auth
	return run(req, settings.passdb_verb, a.PASSDB_RESULT_OK,
		a.PASSDB_RESULT_USER_UNKNOWN, a.PASSDB_RESULT_INTERNAL_FAILURE)
end

function auth_userdb_lookup(req)
	local a = dovecot.auth
	return run(req, settings.userdb_verb, a.USERDB_RESULT_OK,
		a.USERDB_RESULT_USER_UNKNOWN, a.USERDB_RESULT_INTERNAL_FAILURE)
end
