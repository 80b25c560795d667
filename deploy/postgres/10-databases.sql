-- One database per service store, and the demo SIAK database the dukcapil adapter reads
-- (in a real deployment SIMPUL_DUKCAPIL_DB points at the department's own SIAK database).
CREATE DATABASE profile;
CREATE DATABASE dinsos;
CREATE DATABASE bapenda;
CREATE DATABASE dinkes;
CREATE DATABASE notifier;
CREATE DATABASE audit;
CREATE DATABASE siak;
