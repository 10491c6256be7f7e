-- Rows per catalogued table: the first thing to check after a crawl.
SELECT 'vehicle_data' AS table_name, count(*) AS row_count FROM smartcity.vehicle_data
UNION ALL SELECT 'gps_data', count(*) FROM smartcity.gps_data
UNION ALL SELECT 'traffic_data', count(*) FROM smartcity.traffic_data
UNION ALL SELECT 'weather_data', count(*) FROM smartcity.weather_data
UNION ALL SELECT 'emergency_data', count(*) FROM smartcity.emergency_data
ORDER BY table_name
